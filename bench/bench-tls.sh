#!/usr/bin/env bash
# bench/bench-tls.sh — HTTPS cost: dcmsd against nginx with the same certificate.
#
#   1. keep-alive requests/s on GET /healthz over TLS 1.3 (wrk, one handshake
#      per connection);
#   2. new TLS handshakes/s: the same with `Connection: close`, so every
#      request is a new TCP connection and a full TLS 1.3 handshake (wrk keeps
#      no session tickets, so none is resumed).
# nginx gets a comparable configuration: TLS 1.3 only, the same P-256 ECDSA
# certificate and key, 2 workers, access log off. Goals: >= 0.5x nginx for both.
# Environment: DCMS_BIN, DCMS_BENCH_SECONDS (default 5), DCMS_BENCH_CONNECTIONS (32).
# Only 127.0.0.1; every wait is bounded; dcmsd, nginx and the temp dir are cleaned up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
DURATION=${DCMS_BENCH_SECONDS:-5}
CONNS=${DCMS_BENCH_CONNECTIONS:-32}
NGINX=/usr/sbin/nginx
tmp=$(mktemp -d /tmp/dcms-bench-tls.XXXXXX)
pid=
npid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "$npid" ] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
die() {
    echo "bench-tls: $*" >&2
    exit 1
}

cd "$tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out srv.csr \
    -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 \
    -extfile ext 2>/dev/null
cat leaf.pem ca.pem >chain.pem

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx, TLS 1.3 only, same certificate.
nport=$(free_port)
user_line=
((EUID != 0)) || user_line='user root;'
mkdir -p nginx
cat >nginx/nginx.conf <<EOF
daemon off;
worker_processes 2;
$user_line
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$nport ssl;
        ssl_certificate $tmp/chain.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_tickets off;
        location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
    }
}
EOF
"$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" </dev/null >/dev/null 2>&1 &
npid=$!

DCMS_LISTEN=127.0.0.1:0 DCMS_DATA_DIR="$tmp/data" DCMS_ACCESS_LOG=false DCMS_MAX_CONNECTIONS_PER_IP=0 \
    DCMS_TLS_CERT_FILE="$tmp/chain.pem" DCMS_TLS_KEY_FILE="$tmp/key.pem" "$DCMS_BIN" 2>"$tmp/log" &
pid=$!
dport=
for _ in $(seq 1 200); do
    dport=$(grep -m1 '"listening"' "$tmp/log" 2>/dev/null | grep -oE '"port":[0-9]+' | cut -d: -f2 || true)
    [ -n "$dport" ] && break
    kill -0 "$pid" 2>/dev/null || die "dcmsd exited: $(tail -3 "$tmp/log")"
    sleep 0.1
done
[ -n "$dport" ] || die "dcmsd did not start"
for _ in $(seq 1 100); do
    curl -s --cacert ca.pem -o /dev/null "https://localhost:$nport/healthz" && break
    sleep 0.1
done
curl -sf --cacert ca.pem -o /dev/null "https://localhost:$nport/healthz" || die "nginx did not start"
curl -sf --cacert ca.pem -o /dev/null "https://localhost:$dport/healthz" || die "dcmsd does not answer over TLS"

rps() { # name url [wrk args...]
    local name=$1 url=$2 out
    shift 2
    out=$(timeout --kill-after=5 $((DURATION + 30)) wrk -t2 -c"$CONNS" -d"${DURATION}s" "$@" "$url" 2>&1)
    local r
    r=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "bench-tls: $name: non-2xx answers" >&2
    fi
    echo "${r:-0}"
}

echo "bench-tls: ${DURATION}s per run, $CONNS connections, TLS 1.3, P-256 ECDSA certificate" >&2
n_ka=$(rps "nginx keep-alive" "https://127.0.0.1:$nport/healthz")
d_ka=$(rps "dcmsd keep-alive" "https://127.0.0.1:$dport/healthz")
n_hs=$(rps "nginx handshakes" "https://127.0.0.1:$nport/healthz" -H 'Connection: close')
d_hs=$(rps "dcmsd handshakes" "https://127.0.0.1:$dport/healthz" -H 'Connection: close')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
printf '\n%-34s %12s %12s %8s\n' "HTTPS /healthz" "dcmsd/s" "nginx/s" ratio
printf '%-34s %12s %12s %8s\n' "keep-alive requests" "$d_ka" "$n_ka" "$(ratio "$d_ka" "$n_ka")"
printf '%-34s %12s %12s %8s\n' "new TLS handshakes (Conn: close)" "$d_hs" "$n_hs" "$(ratio "$d_hs" "$n_hs")"
echo "bench: dcmsd HTTPS keep-alive = $(ratio "$d_ka" "$n_ka") of nginx, handshakes = $(ratio "$d_hs" "$n_hs") of nginx (goal >= 0.5)"
