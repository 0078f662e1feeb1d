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
# nodes), and the script prints both figures, their p99 latency, the
# sequencing delay p99 under each load (how long the audit events of the
# phase waited for their position: from the event's time to the first
# signed tree head that covers it, read from the store once the sequencer
# has caught up, at most 30 s) and the ratio. Audited writes share no row
# (the sequencer integrates them in batches), so the ratio measures what a
# second dcmsd adds on this machine. Everything runs on 127.0.0.1 and is
# removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${DCMS_BENCH_SECONDS:-5}
CLIENTS=${DCMS_BENCH_CLIENTS:-16}
export DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
DIR=$(mktemp -d /tmp/dcms-bench-nodes.XXXXXX)
rmdir "$DIR"
trap '"$ROOT/scripts/multinode.sh" stop "$DIR" >/dev/null 2>&1 || true; rm -f "$DIR.log" "$DIR.split1" "$DIR.split2"' EXIT

LB=$("$ROOT/scripts/multinode.sh" start "$DIR" 2 2>"$DIR.log")
node_url() { echo "http://$(grep -oE 'server 127\.0\.0\.1:[0-9]+' "$DIR/nginx/nginx.conf" | sed -n "${1}p" | cut -d' ' -f2)"; }
NODE1=$(node_url 1)
NODE2=$(node_url 2)
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

PG_URL=$(cat "$DIR/pg/url")
sql() { psql -qAtX -v ON_ERROR_STOP=1 "$PG_URL" -c "$1"; }
last_seq() { sql "SELECT COALESCE(MAX(seq), 0) FROM audit_events"; }
# The p99 wait for a position of the events after seq $1, once none is pending.
seq_p99() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(sql "SELECT COUNT(*) FROM audit_pending") == 0 ]] && break
        sleep 0.1
    done
    sql "SELECT COALESCE(ROUND(CAST(percentile_disc(0.99) WITHIN GROUP (ORDER BY
             EXTRACT(EPOCH FROM (h.time - e.time)) * 1000) AS NUMERIC), 1), 0)
         FROM audit_events e, LATERAL (SELECT time FROM audit_tree_heads
             WHERE tree_size >= e.seq ORDER BY tree_size LIMIT 1) h
         WHERE e.seq > $1"
}

from=$(last_seq)
read -r one one_p99 one_err < <(node "$ROOT/bench/nodes_load.mjs" "$NODE1" "$TOKEN" "$PROVIDER" "$CONSUMER" "$CLIENTS" "$SECS")
one_seq=$(seq_p99 "$from")
from=$(last_seq)
read -r two two_p99 two_err < <(node "$ROOT/bench/nodes_load.mjs" "$LB" "$TOKEN" "$PROVIDER" "$CONSUMER" "$CLIENTS" "$SECS")
two_seq=$(seq_p99 "$from")
# Both nodes without the balancer's share of the CPU: half the clients on each, directly.
from=$(last_seq)
half=$(((CLIENTS + 1) / 2))
node "$ROOT/bench/nodes_load.mjs" "$NODE1" "$TOKEN" "$PROVIDER" "$CONSUMER" "$half" "$SECS" >"$DIR.split1" &
node "$ROOT/bench/nodes_load.mjs" "$NODE2" "$TOKEN" "$PROVIDER" "$CONSUMER" "$half" "$SECS" >"$DIR.split2"
wait
read -r a a_p99 a_err <"$DIR.split1"
read -r b b_p99 b_err <"$DIR.split2"
rm -f "$DIR.split1" "$DIR.split2"
split=$(python3 -c "print(f'{$a + $b:.1f}')")
split_p99=$(python3 -c "print(max($a_p99, $b_p99))")
split_seq=$(seq_p99 "$from")
row() { printf '%-30s %12s %10s %7s %18s\n' "$@"; }
row "contract creations" "per second" "p99 ms" "errors" "sequencing p99 ms"
row "1 node (direct)" "$one" "$one_p99" "$one_err" "$one_seq"
row "2 nodes (through nginx)" "$two" "$two_p99" "$two_err" "$two_seq"
row "2 nodes (direct, clients split)" "$split" "$split_p99" "$((a_err + b_err))" "$split_seq"
ratio() { python3 -c "print(f'{$1 / $2:.2f}' if $2 > 0 else 'n/a')"; }
echo "bench: 2 nodes / 1 node = $(ratio "$two" "$one")x through nginx, $(ratio "$split" "$one")x direct" \
     "($CLIENTS clients, ${SECS}s each, one PostgreSQL)"
