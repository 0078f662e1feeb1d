#!/usr/bin/env bash
# bench/bench-nodes.sh — contract creations/s with one node and with two
# nodes on one PostgreSQL, in the same run (issue 20's scale-out figure).
#
# Usage: bench/bench-nodes.sh   (`make bench` runs every bench/bench-*.sh)
#
# Environment:
#   DCMS_BIN               dcmsd (default build/dcmsd)
#   DCMS_BENCH_SECONDS     seconds per measurement (default 5)
#   DCMS_BENCH_CLIENTS     concurrent clients (default 16)
#
# scripts/multinode.sh starts a throwaway PostgreSQL cluster, two dcmsd and
# nginx in front; bench/nodes_load.mjs then creates contracts for the given
# time, first against node 1 alone (directly), then through nginx (both
# nodes), and the script prints both figures, their p99 latency and the
# ratio. Every audited write holds the audit head row lock until it commits,
# so the ratio measures how much of the write path the store serializes.
# Everything runs on 127.0.0.1 and is removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${DCMS_BENCH_SECONDS:-5}
CLIENTS=${DCMS_BENCH_CLIENTS:-16}
export DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
DIR=$(mktemp -d /tmp/dcms-bench-nodes.XXXXXX)
rmdir "$DIR"
trap '"$ROOT/scripts/multinode.sh" stop "$DIR" >/dev/null 2>&1 || true' EXIT

LB=$("$ROOT/scripts/multinode.sh" start "$DIR" 2 2>"$DIR.log")
NODE1=http://$(grep -oE '127\.0\.0\.1:[0-9]+' "$DIR/nginx/nginx.conf" | sed -n 2p)
PW=$(cat "$DIR/admin-password")

post() { curl -fsS --max-time 30 -H 'Content-Type: application/json' "$@"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
ADMIN=$(post "$LB/api/v1/auth/login" -d "{\"email\":\"admin@dcms.test\",\"password\":\"$PW\"}" |
        field access_token)
user() {
    post "$LB/api/v1/identities" -H "Authorization: Bearer $ADMIN" \
        -d "{\"kind\":\"user\",\"name\":\"$1\",\"email\":\"$1@bench.test\",\"password\":\"bench-password-1234\",\"roles\":[\"$1\"]}" |
        field id
}
PROVIDER=$(user provider)
CONSUMER=$(user consumer)
TOKEN=$(post "$LB/api/v1/auth/login" -d '{"email":"provider@bench.test","password":"bench-password-1234"}' |
        field access_token)

read -r one one_p99 one_err < <(node "$ROOT/bench/nodes_load.mjs" "$NODE1" "$TOKEN" "$PROVIDER" "$CONSUMER" "$CLIENTS" "$SECS")
read -r two two_p99 two_err < <(node "$ROOT/bench/nodes_load.mjs" "$LB" "$TOKEN" "$PROVIDER" "$CONSUMER" "$CLIENTS" "$SECS")
printf '%-28s %12s %10s %7s\n' "contract creations" "per second" "p99 ms" "errors"
printf '%-28s %12s %10s %7s\n' "1 node (direct)" "$one" "$one_p99" "$one_err"
printf '%-28s %12s %10s %7s\n' "2 nodes (through nginx)" "$two" "$two_p99" "$two_err"
echo "bench: 2 nodes / 1 node = $(python3 -c "print(f'{$two / $one:.2f}' if $one > 0 else 'n/a')")x" \
     "($CLIENTS clients, ${SECS}s each, one PostgreSQL)"
