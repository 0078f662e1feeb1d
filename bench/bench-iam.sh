#!/usr/bin/env bash
# bench/bench-iam.sh — cost of IAM in the request path.
#
#   1. logins/s through POST /api/v1/auth/login (argon2id-bound; the
#      parameters are printed), a bounded node loop with 4 clients;
#   2. wrk on GET /healthz without a token and with a valid Bearer JWT (the
#      token is verified on every request, public routes included, through
#      the verified-token cache): the goal is < 10% throughput loss;
#   3. wrk on GET /api/v1/identities/{own id} with the token (a protected,
#      store-backed read) for scale;
#   4. the same two with an API key of a service identity instead of a JWT.
# Environment: DCMS_BIN, DCMS_BENCH_SECONDS (default 5), DCMS_BENCH_CONNECTIONS (32).
# Only 127.0.0.1; every wait is bounded; dcmsd and the temp dir are cleaned up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
DURATION=${DCMS_BENCH_SECONDS:-5}
CONNS=${DCMS_BENCH_CONNECTIONS:-32}
tmp=$(mktemp -d /tmp/dcms-bench-iam.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

export DCMS_ADMIN_EMAIL=bench@dcms.local DCMS_ADMIN_PASSWORD=bench-admin-passphrase
DCMS_LISTEN=127.0.0.1:0 DCMS_DATA_DIR="$tmp" DCMS_ACCESS_LOG=false \
    DCMS_LOGIN_MAX_FAILURES_PER_IP=100000 "$DCMS_BIN" 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 1 200); do
    port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$tmp/log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "bench-iam: dcmsd did not start" >&2; cat "$tmp/log" >&2; exit 1; }
B=http://127.0.0.1:$port

node --input-type=module - "$B" "$DURATION" >"$tmp/login.json" <<'JS'
const [base, secs] = process.argv.slice(2);
const body = JSON.stringify({ email: process.env.DCMS_ADMIN_EMAIL, password: process.env.DCMS_ADMIN_PASSWORD });
const end = Date.now() + Number(secs) * 1000;
let n = 0, bad = 0, token = null;
async function worker() {
  while (Date.now() < end) {
    const r = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    const j = await r.json();
    if (r.status === 200) { n++; token = j.access_token; } else bad++;
  }
}
const t0 = Date.now();
await Promise.all([worker(), worker(), worker(), worker()]);
console.log(JSON.stringify({ logins_per_s: n / ((Date.now() - t0) / 1000), errors: bad, token }));
JS
read -r lps lerr token < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["logins_per_s"],1), d["errors"], d["token"])' "$tmp/login.json")
sub=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["sub"])' "$token")

rps() { # url [header]
    local out
    if [ $# -gt 1 ]; then out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "$2" "$1"); else out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" "$1"); fi
    if grep -q "Non-2xx" <<<"$out"; then echo "bench-iam: non-2xx answers for $1" >&2; echo "$out" >&2; exit 1; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}
plain=$(rps "$B/healthz")
authd=$(rps "$B/healthz" "Authorization: Bearer $token")
ident=$(rps "$B/api/v1/identities/$sub" "Authorization: Bearer $token")
# An API key of a service identity, scoped to identities:read (verified through its own cache).
post() { curl -sf --max-time 10 "$B$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$2"; }
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
svc=$(post /api/v1/identities '{"kind":"service","name":"bench","roles":["auditor"]}' | jget id)
exp=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
key=$(post /api/v1/api-keys "{\"name\":\"bench\",\"identity_id\":\"$svc\",\"permissions\":[\"identities:read\"],\"expires_at\":\"$exp\"}" | jget key)
keyd=$(rps "$B/healthz" "Authorization: Bearer $key")
kident=$(rps "$B/api/v1/identities/$svc" "Authorization: Bearer $key")
loss=$(python3 -c "print(round(100*(1-$authd/$plain),1))")
echo "bench-iam: argon2id opslimit=${DCMS_PWHASH_OPSLIMIT:-2} memlimit=${DCMS_PWHASH_MEMLIMIT_KIB:-19456} KiB, max concurrent = CPUs ($(nproc))"
printf '  %-52s %10s\n' "POST /api/v1/auth/login (4 clients)" "$lps/s (errors $lerr)"
printf '  %-52s %10s\n' "GET /healthz, no token" "$plain/s"
printf '  %-52s %10s\n' "GET /healthz, Bearer JWT (verified, cached)" "$authd/s"
printf '  %-52s %10s\n' "GET /api/v1/identities/{own id}, Bearer JWT" "$ident/s"
printf '  %-52s %10s\n' "GET /healthz, Bearer API key (verified, cached)" "$keyd/s"
printf '  %-52s %10s\n' "GET /api/v1/identities/{own id}, Bearer API key" "$kident/s"
echo "bench-iam: authenticating costs ${loss}% of /healthz throughput (goal < 10%)"
kill "$pid"; wait "$pid" || true; pid=
