#!/usr/bin/env bash
# scripts/multinode.sh — several dcmsd on one PostgreSQL behind nginx, on
# 127.0.0.1, for trying the multi-node setup by hand (docs/deployment.md).
# The automated scenario is tests/multinode/ (scripts/test.sh runs it).
#
# Usage:
#   scripts/multinode.sh start DIR [NODES]   a PostgreSQL cluster in DIR/pg
#                                            (scripts/pg-cluster.sh), NODES
#                                            dcmsd (default 2, ids node-1..N,
#                                            data in DIR/node-I, logs in
#                                            DIR/node-I.log) and nginx
#                                            (tests/multinode/nginx.conf.in);
#                                            prints the balancer's URL
#   scripts/multinode.sh stop DIR            stops all of it and removes DIR
#
# DIR must be directly under /tmp (or another directory the postgres user can
# enter). The bootstrap admin is admin@dcms.test with the password in
# DIR/admin-password. Node 1 starts first and creates the keyring and the
# audit key; the others share them (see "What is per node" in
# docs/deployment.md). DCMS_BIN picks dcmsd (default build/dcmsd).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
NGINX=/usr/sbin/nginx

die() { echo "multinode: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    local url=$1 i
    for ((i = 0; i < 150; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start() {
    local dir=$1 n=${2:-2} i port ports=() upstreams='' temp_paths='' user_line='' m
    [[ -x $BIN ]] || die "no dcmsd at $BIN (build it, or set DCMS_BIN)"
    mkdir -p "$dir"
    local url
    url=$("$ROOT/scripts/pg-cluster.sh" start "$dir/pg")
    local pw
    pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s\n' "$pw" >"$dir/admin-password"
    chmod 600 "$dir/admin-password"
    for ((i = 1; i <= n; i++)); do
        port=$(free_port)
        local env=(DCMS_LISTEN=127.0.0.1:$port DCMS_DATA_DIR=$dir/node-$i DCMS_DATABASE_URL=$url
                   DCMS_NODE_ID=node-$i DCMS_ADMIN_EMAIL=admin@dcms.test DCMS_ADMIN_PASSWORD=$pw)
        if ((i > 1)); then
            env+=(DCMS_KEYS_FILE=$dir/node-1/keys/keyring
                  DCMS_AUDIT_KEY_FILE=$dir/node-1/audit/ed25519.key)
        fi
        env "${env[@]}" "$BIN" </dev/null >"$dir/node-$i.log" 2>&1 &
        echo $! >"$dir/node-$i.pid"
        wait_http "http://127.0.0.1:$port/healthz" || die "node-$i did not start (see $dir/node-$i.log)"
        ports+=("$port")
        upstreams+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'
        echo "multinode: node-$i on http://127.0.0.1:$port" >&2
    done
    mkdir -p "$dir/nginx"
    ((EUID != 0)) || user_line='user root;'
    temp_paths="    client_body_temp_path $dir/nginx/client_body;"
    local v
    v=$("$NGINX" -V 2>&1)
    for m in proxy fastcgi uwsgi scgi; do
        [[ $v == *"--without-http_${m}_module"* ]] || temp_paths+=$'\n'"    ${m}_temp_path $dir/nginx/$m;"
    done
    port=$(free_port)
    local line out=$dir/nginx/nginx.conf
    : >"$out"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line//@TMP@/$dir/nginx}
        line=${line//@PORT@/$port}
        line=${line//@USER@/$user_line}
        line=${line//@TEMP_PATHS@/$temp_paths}
        line=${line//@UPSTREAMS@/${upstreams%$'\n'}}
        printf '%s\n' "$line" >>"$out"
    done <"$ROOT/tests/multinode/nginx.conf.in"
    "$NGINX" -p "$dir/nginx/" -c "$out" -e "$dir/nginx/error.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/nginx.pid"
    wait_http "http://127.0.0.1:$port/healthz" || die "nginx did not start (see $dir/nginx/error.log)"
    echo "http://127.0.0.1:$port"
}

stop() {
    local dir=$1 f pid
    [[ -d $dir ]] || return 0
    for f in "$dir"/nginx.pid "$dir"/node-*.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    "$ROOT/scripts/pg-cluster.sh" stop "$dir/pg" >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case ${1:-} in
start) [[ $# -ge 2 ]] || die "usage: $0 start DIR [NODES]"; start "$2" "${3:-2}" ;;
stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start DIR [NODES] | stop DIR" ;;
esac
