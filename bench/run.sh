#!/usr/bin/env bash
# bench/run.sh — HTTP throughput benchmark of dcmsd against an nginx baseline.
#
# Usage: bench/run.sh        (`make bench` calls it after building dcmsd)
#
# Environment:
#   DCMS_BIN                 dcmsd binary (default: build/dcmsd in the repo)
#   DCMS_BENCH_SECONDS       duration of each wrk run (default 10)
#   DCMS_BENCH_CONNECTIONS   wrk connections (default 64); wrk uses 2 threads
#   DCMS_BENCH_JSON          where to write the results as JSON (default:
#                            dcms-bench.json beside the temporary directory,
#                            i.e. ${TMPDIR:-/tmp}/dcms-bench.json)
#   DCMS_DATABASE_URL        passed through to dcmsd (default: SQLite in the
#                            temporary data dir)
#
# Starts dcmsd (DCMS_LISTEN=127.0.0.1:0, a fresh DCMS_DATA_DIR, access log off
# unless DCMS_ACCESS_LOG is set) and nginx (bench/nginx.conf.in, returning the
# same /healthz body), runs `wrk --latency` against nginx /healthz,
# dcmsd /healthz and dcmsd /api/v1/system (a store-backed read), and prints a
# table of requests/s, p99 latency and the ratio to nginx, ending with
#   bench: dcmsd /healthz = X of nginx
# Exits 1 if any run had non-2xx/3xx responses or errors, or if dcmsd did not
# exit 0 on SIGTERM. Only 127.0.0.1 is contacted; every wait is bounded; the
# temporary directory, dcmsd and nginx are always cleaned up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
DURATION=${DCMS_BENCH_SECONDS:-10}
CONNS=${DCMS_BENCH_CONNECTIONS:-64}
THREADS=2
NGINX=/usr/sbin/nginx
READY_TIMEOUT=20   # seconds to wait for dcmsd's "listening" log line
STOP_TIMEOUT=15    # seconds to wait for dcmsd/nginx to exit after SIGTERM

die() {
    echo "bench: $*" >&2
    exit 1
}

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_SECONDS must be a positive integer, got '$DURATION'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_CONNECTIONS must be a positive integer, got '$CONNS'"
((CONNS >= THREADS)) || die "DCMS_BENCH_CONNECTIONS must be at least $THREADS"
[[ -x $DCMS_BIN ]] || die "no dcmsd binary at $DCMS_BIN (build it first, or set DCMS_BIN)"
DCMS_BIN=$(realpath -- "$DCMS_BIN")
for tool in wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (run scripts/deps.sh)"
done
[[ -x $NGINX ]] || die "$NGINX is not installed (run scripts/deps.sh)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench.XXXXXX")
JSON_OUT=${DCMS_BENCH_JSON:-$(dirname "$tmp")/dcms-bench.json}

DCMSD_PID=
NGINX_PID=
DCMSD_EXIT=   # dcmsd's exit status once stopped

# Stop a child by pid: SIGTERM, bounded wait, SIGKILL as a last resort.
# Sets STOPPED_STATUS to its exit status (or "killed").
stop_child() {
    local pid=$1 name=$2 i
    STOPPED_STATUS=
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bench: $name (pid $pid) did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        STOPPED_STATUS=killed
        return
    fi
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    STOPPED_STATUS=$rc
}

stop_dcmsd() {
    [[ -n $DCMSD_PID ]] || return 0
    stop_child "$DCMSD_PID" dcmsd
    DCMSD_EXIT=$STOPPED_STATUS
    DCMSD_PID=
    if [[ $DCMSD_EXIT != 0 ]]; then
        echo "bench: dcmsd did not exit 0 on SIGTERM (status: $DCMSD_EXIT); last log lines:" >&2
        tail -n 20 "$tmp/dcmsd.log" >&2 2>/dev/null || true
    fi
}

stop_nginx() {
    [[ -n $NGINX_PID ]] || return 0
    stop_child "$NGINX_PID" nginx
    NGINX_PID=
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    stop_dcmsd
    stop_nginx
    rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# HTTP status of one GET (000 when nothing answered); proxies are bypassed.
http_status() {
    curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- nginx
start_nginx() {
    local dir=$tmp/nginx port attempt user_line='' temp_paths='' i m
    mkdir -p "$dir"
    # Workers of an nginx started as root drop to `nobody`, who cannot enter
    # the 0700 temporary directory; run them as root instead.
    ((EUID != 0)) || user_line='user root;'
    # Temp paths must point into $tmp (the compiled-in ones are under
    # /var/lib/nginx); only name the modules this nginx was built with.
    local nginx_v
    nginx_v=$("$NGINX" -V 2>&1)
    temp_paths="    client_body_temp_path $dir/client_body;"
    for m in proxy fastcgi uwsgi scgi; do
        if [[ $nginx_v != *"--without-http_${m}_module"* ]]; then
            temp_paths+=$'\n'"    ${m}_temp_path $dir/$m;"
        fi
    done
    for attempt in 1 2 3; do
        port=$(free_port)
        local line out=$dir/nginx.conf
        : >"$out"
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line//@TMP@/$dir}
            line=${line//@PORT@/$port}
            line=${line//@USER@/$user_line}
            line=${line//@TEMP_PATHS@/$temp_paths}
            printf '%s\n' "$line" >>"$out"
        done <"$ROOT/bench/nginx.conf.in"
        "$NGINX" -p "$dir/" -c "$out" -e "$dir/error.log" </dev/null >"$dir/stdout.log" 2>&1 &
        NGINX_PID=$!
        for ((i = 0; i < 100; i++)); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            if [[ $(http_status "http://127.0.0.1:$port/healthz") == 200 ]]; then
                NGINX_PORT=$port
                echo "bench: nginx listening on 127.0.0.1:$port" >&2
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$NGINX_PID" 2>/dev/null; then
            stop_nginx
            die "nginx did not answer on 127.0.0.1:$port within 10s"
        fi
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
        if grep -q 'Address already in use' "$dir/error.log" "$dir/stdout.log" 2>/dev/null; then
            echo "bench: nginx port $port was taken (attempt $attempt), retrying" >&2
            continue
        fi
        cat "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
        die "nginx failed to start"
    done
    die "nginx could not get a free port"
}

# ---------------------------------------------------------------- dcmsd
start_dcmsd() {
    local log=$tmp/dcmsd.log deadline line port=
    mkdir -p "$tmp/data"
    (
        cd "$tmp"
        export DCMS_LISTEN=127.0.0.1:0 DCMS_DATA_DIR="$tmp/data"
        # nginx's access log is off too; keep the comparison fair.
        export DCMS_ACCESS_LOG="${DCMS_ACCESS_LOG:-false}"
        # Every wrk connection comes from 127.0.0.1: no per-address cap.
        export DCMS_MAX_CONNECTIONS_PER_IP="${DCMS_MAX_CONNECTIONS_PER_IP:-0}"
        exec "$DCMS_BIN"
    ) </dev/null >"$tmp/dcmsd.stdout" 2>"$log" &
    DCMSD_PID=$!
    deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        line=$(grep -m 1 -E '"msg"[[:space:]]*:[[:space:]]*"listening"' "$log" 2>/dev/null || true)
        if [[ -n $line ]]; then
            port=$(grep -oE '"port"[[:space:]]*:[[:space:]]*[0-9]+' <<<"$line" | grep -oE '[0-9]+$' || true)
            [[ -n $port ]] || die "dcmsd's listening line has no \"port\": $line"
            DCMSD_PORT=$port
            echo "bench: dcmsd listening on 127.0.0.1:$port" >&2
            return 0
        fi
        if ! kill -0 "$DCMSD_PID" 2>/dev/null; then
            local rc=0
            wait "$DCMSD_PID" 2>/dev/null || rc=$?
            DCMSD_PID=
            echo "bench: dcmsd exited with status $rc before listening; its log:" >&2
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "bench: dcmsd did not log \"msg\":\"listening\" within ${READY_TIMEOUT}s; its log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
}

# ---------------------------------------------------------------- wrk
# Parallel arrays, one entry per run.
R_NAME=() R_URL=() R_RPS=() R_P99=() R_NON2XX=() R_SOCKERR=() R_STATUS=()

# Latency as printed by wrk (e.g. 812.00us, 1.20ms, 2.01s, 1.00m) -> ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /^[0-9.]+/) == 0) { print ""; exit }
        n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { print ""; exit }
        printf "%.3f", n * f
    }'
}

run_wrk() {
    local name=$1 url=$2 out code rc=0 rps p99 non2xx sockerr status=ok
    out=$tmp/wrk-${#R_NAME[@]}.txt
    code=$(http_status "$url")
    [[ $code == 200 ]] || echo "bench: warning: GET $url answered $code before the run" >&2
    echo "bench: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency $url" >&2
    timeout --kill-after=5 $((DURATION + 30)) \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$out" 2>&1 || rc=$?
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ { gsub(/[[:space:]]/, "", $2); print $2 }' "$out")
    non2xx=${non2xx:-0}
    sockerr=$(sed -n 's/^[[:space:]]*Socket errors:[[:space:]]*//p' "$out")
    if ((rc != 0)) || [[ -z $rps ]]; then
        status=FAILED
        echo "bench: wrk failed (status $rc) for $url:" >&2
        cat "$out" >&2
    elif ((non2xx > 0)); then
        status=FAILED
        echo "bench: $name: $non2xx non-2xx/3xx responses" >&2
    fi
    if [[ -n $sockerr ]]; then
        echo "bench: $name: socket errors: $sockerr" >&2
    fi
    R_NAME+=("$name") R_URL+=("$url") R_RPS+=("${rps:-}") R_P99+=("${p99:-}")
    R_NON2XX+=("$non2xx") R_SOCKERR+=("$sockerr") R_STATUS+=("$status")
}

# ---------------------------------------------------------------- main
echo "bench: ${DURATION}s per run, $CONNS connections, $THREADS wrk threads; dcmsd: $DCMS_BIN" >&2
if [[ -n ${DCMS_DATABASE_URL:-} ]]; then
    echo "bench: dcmsd store: DCMS_DATABASE_URL from the environment" >&2
else
    echo "bench: dcmsd store: SQLite in $tmp/data" >&2
fi

NGINX_PORT=
DCMSD_PORT=
start_nginx
start_dcmsd

run_wrk "nginx /healthz" "http://127.0.0.1:$NGINX_PORT/healthz"
run_wrk "dcmsd /healthz" "http://127.0.0.1:$DCMSD_PORT/healthz"
run_wrk "dcmsd /api/v1/system" "http://127.0.0.1:$DCMSD_PORT/api/v1/system"

stop_dcmsd
stop_nginx

# ratio of requests/s to nginx's, 2 decimals ("" when unknown)
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.3f", a / b }'
}

failed=0
nginx_rps=${R_RPS[0]}
printf '\n%-22s %12s %10s %9s  %s\n' target requests/s "p99 ms" "vs nginx" status
json_results=
for i in "${!R_NAME[@]}"; do
    r=$(ratio "${R_RPS[$i]}" "$nginx_rps")
    printf '%-22s %12s %10s %9s  %s\n' "${R_NAME[$i]}" "${R_RPS[$i]:--}" "${R_P99[$i]:--}" "${r:--}" "${R_STATUS[$i]}"
    [[ ${R_STATUS[$i]} == ok ]] || failed=1
    [[ -z $json_results ]] || json_results+=','
    json_results+=$(printf '\n    {"target": "%s", "url": "%s", "requests_per_sec": %s, "p99_ms": %s, "ratio_to_nginx": %s, "non_2xx_3xx": %s, "socket_errors": "%s", "status": "%s"}' \
        "${R_NAME[$i]}" "${R_URL[$i]}" "${R_RPS[$i]:-null}" "${R_P99[$i]:-null}" "${r:-null}" \
        "${R_NON2XX[$i]}" "${R_SOCKERR[$i]}" "${R_STATUS[$i]}")
done
healthz_ratio=$(ratio "${R_RPS[1]}" "$nginx_rps")
if [[ $DCMSD_EXIT != 0 ]]; then
    echo "dcmsd exit status on SIGTERM: $DCMSD_EXIT (expected 0) — FAILED"
    failed=1
fi

dcmsd_exit_json=$DCMSD_EXIT
[[ $dcmsd_exit_json =~ ^[0-9]+$ ]] || dcmsd_exit_json="\"$dcmsd_exit_json\""
cat >"$JSON_OUT" <<EOF
{
  "seconds": $DURATION,
  "connections": $CONNS,
  "threads": $THREADS,
  "results": [$json_results
  ],
  "dcmsd_healthz_vs_nginx": ${healthz_ratio:-null},
  "dcmsd_exit_status": $dcmsd_exit_json,
  "ok": $( ((failed == 0)) && echo true || echo false)
}
EOF
echo "bench: results written to $JSON_OUT" >&2
echo "bench: dcmsd /healthz = ${healthz_ratio:-n/a} of nginx"
exit "$failed"
