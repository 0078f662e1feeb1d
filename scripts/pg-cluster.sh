#!/usr/bin/env bash
# scripts/pg-cluster.sh — a throwaway PostgreSQL 15 cluster for tests.
#
# Usage:
#   url=$(scripts/pg-cluster.sh start DIR)   initdb into DIR/data, start on a
#                                            free 127.0.0.1 port, print the URL
#   scripts/pg-cluster.sh restart DIR        pg_ctl restart -m fast, same port
#   scripts/pg-cluster.sh stop DIR           stop the server and remove DIR
#                                            (succeeds if DIR is already gone)
#   url=$(scripts/pg-cluster.sh start DIR --ssl)
#                                            the same, with TLS required on TCP:
#                                            a throwaway CA (DIR/ca.pem) and a
#                                            server certificate for 127.0.0.1;
#                                            the URL ends with
#                                            ?sslmode=verify-full&sslrootcert=DIR/ca.pem
#
# `start` prints exactly one line on stdout,
#   postgres://dcms:PASSWORD@127.0.0.1:PORT/postgres
# and writes it to DIR/url (mode 0600); everything else goes to stderr. The
# superuser is `dcms` with a random hex password; TCP connections use
# scram-sha-256, the Unix socket (in DIR) is trust. The server log is
# DIR/postgres.log. Durability is off (fsync, synchronous_commit,
# full_page_writes): the data is disposable.
#
# Running as root: PostgreSQL refuses to run as root, so DIR is created (if
# missing) with mode 0755 and chowned to the `postgres` user, and every
# PostgreSQL binary runs through `runuser -u postgres --`. DIR's parent
# directories must be searchable by `postgres`: a directory made by
# `mktemp -d` is fine as DIR itself (it is chowned), but not as DIR's parent
# (mode 0700 root) — `start` checks this and says so. As a non-root user the
# binaries run directly as that user.
set -euo pipefail

PG_MAJOR=15
START_TIMEOUT=30    # seconds to wait for the server to accept connections
STOP_TIMEOUT=30     # seconds to wait for a fast shutdown
MARKER=.pg-cluster  # file in DIR that lets `stop` know DIR is ours to remove

die() {
    echo "pg-cluster: $*" >&2
    exit 1
}
log() { echo "pg-cluster: $*" >&2; }

usage() {
    echo "usage: $0 start|stop|restart DIR [--ssl]" >&2
    exit 2
}

(($# == 2)) || { (($# == 3)) && [[ $3 == --ssl ]]; } || usage
cmd=$1
SSL=${3:-}
[[ -n "$2" ]] || usage
DIR=$(realpath -m -- "$2")
DATA=$DIR/data
LOGFILE=$DIR/postgres.log
cd /   # `postgres` may not be able to enter the caller's cwd

BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
if [[ ! -x $BINDIR/pg_ctl ]]; then
    command -v pg_config >/dev/null 2>&1 || die "PostgreSQL $PG_MAJOR not found (run scripts/deps.sh)"
    BINDIR=$(pg_config --bindir)
    [[ -x $BINDIR/pg_ctl ]] || die "no pg_ctl in $BINDIR (run scripts/deps.sh)"
fi

AS_PG=()
if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (install postgresql)"
    AS_PG=(runuser -u postgres --)
fi

# Run a PostgreSQL binary as the cluster owner; its stdout goes to stderr.
pg() {
    local prog=$1
    shift
    "${AS_PG[@]}" "$BINDIR/$prog" "$@" >&2
}

# A free TCP port on 127.0.0.1: ask the kernel through python3 (bind port 0),
# or, without python3, a random port in 20000-52767 that nothing answers on.
free_port() {
    if command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'; then
        return 0
    fi
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 32768))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

wait_ready() {
    local port=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

conf_port() {
    sed -n 's/^port = \([0-9]*\)$/\1/p' "$DATA/pg-cluster.conf"
}

show_log_tail() {
    if [[ -f $LOGFILE ]]; then
        log "last lines of $LOGFILE:"
        tail -n 20 "$LOGFILE" >&2 || true
    fi
}

start() {
    [[ ! -e $DATA ]] || die "$DATA already exists (stop it first: $0 stop $DIR)"
    mkdir -p -- "$DIR"
    touch -- "$DIR/$MARKER"
    chmod 0755 -- "$DIR"
    if ((EUID == 0)); then
        chown postgres:postgres -- "$DIR"
        "${AS_PG[@]}" test -w "$DIR" -a -x "$DIR" ||
            die "user postgres cannot enter $DIR: every parent directory must be searchable by it (use a DIR directly under /tmp, e.g. DIR=\$(mktemp -d))"
    fi
    # unix_socket_directories: the socket path must fit in sun_path (107 bytes).
    ((${#DIR} + 20 < 107)) || die "DIR path is too long for a Unix socket: $DIR"

    local password pwfile
    password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    pwfile=$DIR/.pwfile
    (umask 077 && printf '%s\n' "$password" >"$pwfile")
    ((EUID != 0)) || chown postgres:postgres -- "$pwfile"
    if ! pg initdb -D "$DATA" -U dcms --pwfile="$pwfile" \
        --auth=scram-sha-256 --auth-local=trust \
        -E UTF8 --locale=C --no-sync --no-instructions; then
        rm -f -- "$pwfile"
        die "initdb failed"
    fi
    rm -f -- "$pwfile"
    echo "include 'pg-cluster.conf'" >>"$DATA/postgresql.conf"
    local query=
    if [[ $SSL == --ssl ]]; then
        make_certs
        # TCP clients must use TLS; the Unix socket (local admin) stays as it was.
        sed -i -E 's/^host(\s)/hostssl\1/' "$DATA/pg_hba.conf"
        query="?sslmode=verify-full&sslrootcert=$DIR/ca.pem"
    fi

    local attempt port=
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$DATA/pg-cluster.conf" <<EOF
# written by scripts/pg-cluster.sh
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        [[ $SSL != --ssl ]] || cat >>"$DATA/pg-cluster.conf" <<EOF
ssl = on
ssl_cert_file = '$DIR/server.pem'
ssl_key_file = '$DIR/server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
        chmod 0644 "$DATA/pg-cluster.conf"
        log "starting PostgreSQL $PG_MAJOR in $DATA on 127.0.0.1:$port (attempt $attempt)"
        if pg pg_ctl -D "$DATA" -l "$LOGFILE" -w -t "$START_TIMEOUT" start; then
            break
        fi
        # Another process may have taken the port between probe and bind.
        if grep -q 'could not bind\|Address already in use' "$LOGFILE" 2>/dev/null && ((attempt < 5)); then
            log "port $port was taken, retrying"
            : >"$LOGFILE"
            continue
        fi
        show_log_tail
        die "the server did not start"
    done
    wait_ready "$port" || {
        show_log_tail
        die "the server did not accept connections within ${START_TIMEOUT}s"
    }

    local url="postgres://dcms:$password@127.0.0.1:$port/postgres$query"
    (umask 077 && printf '%s\n' "$url" >"$DIR/url")
    printf '%s\n' "$url"
}

# A throwaway CA and a server certificate for 127.0.0.1 and localhost (openssl CLI).
make_certs() {
    command -v openssl >/dev/null 2>&1 || die "--ssl needs the openssl command"
    (
        cd "$DIR" && umask 077 &&
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout ca.key -out ca.pem -days 2 -subj "/CN=pg-cluster test CA" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext &&
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                -out server.pem -days 2 -extfile server.ext
    ) >/dev/null 2>&1 || die "cannot make the TLS certificates"
    chmod 0644 "$DIR/ca.pem" "$DIR/server.pem"
    ((EUID != 0)) || chown postgres:postgres -- "$DIR/server.key" "$DIR/server.pem"
    rm -f -- "$DIR/ca.key" "$DIR/server.csr" "$DIR/server.ext"
}

restart() {
    [[ -f $DATA/PG_VERSION ]] || die "no cluster in $DATA (start one first)"
    local port
    port=$(conf_port)
    log "restarting the server in $DATA (port $port)"
    pg pg_ctl -D "$DATA" -l "$LOGFILE" -w -t "$START_TIMEOUT" restart -m fast || {
        show_log_tail
        die "restart failed"
    }
    wait_ready "$port" || {
        show_log_tail
        die "the server did not accept connections within ${START_TIMEOUT}s"
    }
}

stop() {
    if [[ ! -e $DIR ]]; then
        return 0
    fi
    [[ -f $DIR/$MARKER ]] || die "$DIR was not made by $0 start; not removing it"
    if [[ -f $DATA/postmaster.pid ]]; then
        if ! pg pg_ctl -D "$DATA" -w -t "$STOP_TIMEOUT" stop -m fast; then
            log "fast shutdown failed; trying immediate"
            if ! pg pg_ctl -D "$DATA" -w -t 10 stop -m immediate; then
                # Last resort: the postmaster this script started, by its pid.
                local pid
                pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)
                if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                    log "killing postmaster $pid"
                    kill -KILL "$pid" 2>/dev/null || true
                    local i
                    for ((i = 0; i < 50; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                    done
                fi
            fi
        fi
    fi
    rm -rf -- "$DIR"
}

case $cmd in
start) start ;;
stop) stop ;;
restart) restart ;;
*) usage ;;
esac
