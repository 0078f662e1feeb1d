#!/usr/bin/env bash
# bench/bench-audit.sh — the cost of the audit chain per write, on SQLite and
# PostgreSQL.
#
# Usage: bench/bench-audit.sh   (`make bench` runs every bench/bench-*.sh)
#
# Environment:
#   DCMS_BUILD_DIR       build directory holding bench/bench_audit (default: build)
#   DCMS_BENCH_SECONDS   seconds per measurement (default 3)
#   DCMS_BENCH_THREADS   thread counts to measure (default "1 8")
#
# For each backend — SQLite in a temporary file, PostgreSQL in a throwaway
# cluster (scripts/pg-cluster.sh; durability off there, as in the tests) —
# bench_audit measures, single- and multi-threaded, a plain insert of one row
# with the audit_events columns into a scratch table and dcms_audit_append,
# each operation in a write transaction of its own (an audited write first
# passes dcms_audit_admit, which holds it while the sequencer is behind, as
# the server does for a write request). Prints a table of
# inserts/s, appends/s, the overhead, the ratio and the sequencing delay p99
# (from an event's time to the first signed tree head covering it), and a line
# per backend:
#   bench: audit <backend> overhead = A% (1 thread), B% (8 threads); goal <= 30%
# The overhead is reported, not enforced. Exits 1 if a run fails or the chain
# does not verify afterwards. The cluster and the temporary files are always
# removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=${DCMS_BUILD_DIR:-$ROOT/build}
BIN=$BUILD/bench/bench_audit
SECONDS_EACH=${DCMS_BENCH_SECONDS:-3}
THREADS=${DCMS_BENCH_THREADS:-"1 8"}
GOAL=30

die() {
    echo "bench-audit: $*" >&2
    exit 1
}

[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_SECONDS must be a positive integer"
for t in $THREADS; do
    [[ $t =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_THREADS must hold positive integers"
done
[[ -x $BIN ]] || die "no $BIN (build first: make build, or set DCMS_BUILD_DIR)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench-audit.XXXXXX")
PGDIR=""
cleanup() {
    if [[ -n $PGDIR ]]; then
        "$ROOT/scripts/pg-cluster.sh" stop "$PGDIR" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

n_threads=$(wc -w <<<"$THREADS")
# Two measurements per thread count, plus start-up, migrations and the final verify.
LIMIT=$((SECONDS_EACH * 2 * n_threads + 120))

results=()

# run_backend NAME URL: runs bench_audit and appends "name threads plain audit" rows.
run_backend() {
    local name=$1 url=$2 out
    echo "bench-audit: $name, ${SECONDS_EACH}s per measurement, threads: $THREADS" >&2
    # shellcheck disable=SC2086
    out=$(timeout "$LIMIT" "$BIN" "$url" "$TMP/$name-audit.key" \
        "$SECONDS_EACH" $THREADS) || die "bench_audit failed on $name"
    while IFS= read -r line; do echo "  $line"; done <<<"$out" >&2
    grep -q '^verify ok=true ' <<<"$out" || die "the chain does not verify after the $name run"
    while read -r line; do
        local t p a d
        t=$(sed -n 's/.*threads=\([0-9]*\).*/\1/p' <<<"$line")
        p=$(sed -n 's/.*plain_per_s=\([0-9]*\).*/\1/p' <<<"$line")
        a=$(sed -n 's/.*audit_per_s=\([0-9]*\).*/\1/p' <<<"$line")
        d=$(sed -n 's/.*seq_p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
        [[ -n $t && -n $p && -n $a && -n $d ]] || die "cannot read the bench_audit line: $line"
        results+=("$name $t $p $a $d")
    done < <(grep '^threads=' <<<"$out")
}

run_backend sqlite "sqlite:$TMP/sqlite/bench.db"

# A directory of its own: when run as root, pg-cluster.sh chowns it to postgres.
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench-audit-pg.XXXXXX")
PGURL=$("$ROOT/scripts/pg-cluster.sh" start "$PGDIR" 2>"$TMP/pg-cluster.log") || {
    cat "$TMP/pg-cluster.log" >&2
    die "cannot start a PostgreSQL cluster"
}
run_backend postgres "$PGURL"
"$ROOT/scripts/pg-cluster.sh" stop "$PGDIR" >/dev/null 2>&1 || die "cannot stop the PostgreSQL cluster"
PGDIR=""

# The share of plain inserts/s lost by auditing (parentheses: a bare > in awk's printf redirects).
overhead() { awk -v p="$1" -v a="$2" 'BEGIN { printf "%.1f", ((p > 0) ? (p - a) * 100 / p : 0) }'; }

ratio() { awk -v p="$1" -v a="$2" 'BEGIN { printf "%.2f", ((p > 0) ? a / p : 0) }'; }

printf '\n%-9s %7s %16s %16s %10s %7s %14s\n' backend threads "plain inserts/s" "audit appends/s" \
    overhead ratio "seq p99 (ms)"
for r in "${results[@]}"; do
    read -r b t p a d <<<"$r"
    printf '%-9s %7s %16s %16s %9s%% %6sx %14s\n' "$b" "$t" "$p" "$a" "$(overhead "$p" "$a")" \
        "$(ratio "$p" "$a")" "$d"
done
echo
for b in sqlite postgres; do
    parts=()
    worst=0
    for r in "${results[@]}"; do
        read -r rb t p a d <<<"$r"
        [[ $rb == "$b" ]] || continue
        o=$(overhead "$p" "$a")
        parts+=("$o% ($t thread$([[ $t == 1 ]] || echo s))")
        worst=$(awk -v w="$worst" -v o="$o" 'BEGIN { print ((o + 0 > w + 0) ? o : w) }')
    done
    verdict=$(awk -v w="$worst" -v g="$GOAL" 'BEGIN { if (w + 0 <= g + 0) print "meets"; else print "misses" }')
    joined=${parts[0]}
    for part in "${parts[@]:1}"; do joined+=", $part"; done
    echo "bench: audit $b overhead = $joined; $verdict the <= ${GOAL}% goal"
done
for r in "${results[@]}"; do
    read -r b t p a d <<<"$r"
    [[ $b == postgres && $t == 8 ]] || continue
    verdict=$(awk -v p="$p" -v a="$a" 'BEGIN { print ((p > 0 && a / p >= 0.7) ? "meets" : "misses") }')
    echo "bench: audit postgres 8 threads = $(ratio "$p" "$a")x plain inserts ($verdict the >= 0.7x goal);" \
        "sequencing delay p99 = ${d} ms"
done
