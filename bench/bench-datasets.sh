#!/usr/bin/env bash
# bench/bench-datasets.sh — dataset ingest: a synthetic CSV uploaded over
# loopback, with tus (PATCH requests of DCMS_BENCH_DATASET_CHUNK bytes, each
# resuming where the previous one stopped) and with one PUT, on SQLite and on
# PostgreSQL, next to `sha256sum` of the same file measured in the same run,
# and the peak RSS growth of dcmsd during each upload.
#
# Usage: bench/bench-datasets.sh   (`make bench` runs it after the HTTP bench)
#        DCMS_BENCH_DATASET_BYTES=268435456 bench/bench-datasets.sh   (a quick run)
#
# Environment:
#   DCMS_BIN                    dcmsd to run (default: build/dcmsd)
#   DCMS_BENCH_DATASET_BYTES    size of the CSV (default 1073741824, 1 GiB)
#   DCMS_BENCH_DATASET_CHUNK    bytes per tus PATCH (default 268435456, 256 MiB)
#   DCMS_BENCH_DATASET_BACKENDS "sqlite postgres" (default), or one of them
#
# SQLite lives in a temporary directory; PostgreSQL in a throwaway cluster
# from scripts/pg-cluster.sh (durability off there, as in the tests). For
# each upload it prints MB/s (hashing, schema validation, AES-256-GCM and the
# store writes included) and sha256sum's MB/s taken just before and just
# after it (the mean is the baseline: the machine's load moves between the
# two), their ratio (goal >= 0.5), and the growth of dcmsd's resident memory
# from just before the upload to its peak during it (VmHWM, goal <= 64 MiB),
# and the CPU seconds dcmsd spent on the upload next to sha256sum's (a
# figure that moves less with the machine's load than the wall clock).
# Each dataset is deleted (crypto-shredded) after its upload. The goals are
# reported, not enforced; the run fails if an upload does not end `ready`
# with the file's SHA-256. One file of the given size is generated, and each
# backend holds at most one copy of it at a time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
BYTES=${DCMS_BENCH_DATASET_BYTES:-1073741824}
CHUNK=${DCMS_BENCH_DATASET_CHUNK:-268435456}
BACKENDS=${DCMS_BENCH_DATASET_BACKENDS:-"sqlite postgres"}

die() {
    echo "bench-datasets: $*" >&2
    exit 1
}

[[ -x $DCMS_BIN ]] || die "no $DCMS_BIN (build first: make build, or set DCMS_BIN)"
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_DATASET_BYTES must be a positive integer"
[[ $CHUNK =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_DATASET_CHUNK must be a positive integer"
for b in $BACKENDS; do
    [[ $b == sqlite || $b == postgres ]] || die "DCMS_BENCH_DATASET_BACKENDS: sqlite and/or postgres"
done
for c in curl jq python3 sha256sum split /usr/bin/time; do command -v $c >/dev/null 2>&1 || die "$c is not installed"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench-datasets.XXXXXX")
pid=""
PGDIR=""
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ -n $PGDIR ]]; then
        "$ROOT/scripts/pg-cluster.sh" stop "$PGDIR" >/dev/null 2>&1 || true
        rm -rf "$PGDIR"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-datasets: generating a ${BYTES}-byte CSV" >&2
timeout 900 python3 "$ROOT/scripts/gen-csv.py" --bytes "$BYTES" --columns 30 --out "$TMP/data.csv" \
    --schema "$TMP/schema.json" || die "gen-csv.py failed"
size=$(stat -c %s "$TMP/data.csv")
# The tus client's requests, one file each (split before the clock starts).
split -b "$CHUNK" -a 4 "$TMP/data.csv" "$TMP/part."
want=$(sha256sum "$TMP/data.csv" | cut -d' ' -f1) # also warms the page cache
# Each upload (chunks included) gets this long; a 1 GiB file takes well under a minute.
LIMIT=$((size / 1000000 + 120))

start_dcmsd() { # $1: store URL ("" for SQLite in the data directory)
    rm -rf "$TMP/data"
    mkdir -p "$TMP/data"
    DCMS_ADMIN_EMAIL=bench@dcms.local DCMS_ADMIN_PASSWORD=bench-admin-passphrase \
        DCMS_LISTEN=127.0.0.1:0 DCMS_DATABASE_URL="$1" DCMS_DATA_DIR="$TMP/data" \
        DCMS_ACCESS_LOG=false DCMS_DATASET_MAX_BYTES=$((size + 1)) "$DCMS_BIN" 2>"$TMP/log" &
    pid=$!
    port=""
    for _ in $(seq 1 300); do
        port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$TMP/log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)
        [[ -n $port ]] && break
        sleep 0.1
    done
    [[ -n $port ]] || { cat "$TMP/log" >&2; die "dcmsd did not start"; }
    B=http://127.0.0.1:$port
    TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'Content-Type: application/json' \
        -d '{"email":"bench@dcms.local","password":"bench-admin-passphrase"}' | jq -r .access_token)
    [[ -n $TOKEN && $TOKEN != null ]] || die "cannot log in"
}

stop_dcmsd() {
    kill "$pid"
    wait "$pid" || true
    pid=""
}

rss_kib() { awk -v k="$1" '$1 == k ":" {print $2}' "/proc/$pid/status"; }
now() { date +%s.%N; }
# CPU seconds (user + system) of dcmsd so far, from /proc (clock ticks).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"; }
# sha256sum's MB/s; its CPU seconds go to SHA_CPU.
sha_mbps() {
    local a b
    a=$(now)
    SHA_CPU=$( { /usr/bin/time -f '%U %S' sha256sum "$TMP/data.csv" >/dev/null; } 2>&1 | awk '{ print $1 + $2 }')
    b=$(now)
    awk -v n="$size" -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", n / (b - a) / 1e6 }'
}

# upload <tus|put>: one dataset, uploaded and checked, then deleted; appends a result line.
upload() {
    local method=$1 id code off len got t0 t1 base peak sha_before sha_after c0 c1 sha_cpu
    id=$(jq -n --slurpfile s "$TMP/schema.json" '{name: "bench", schema: $s[0]}' |
        curl -sf "$B/api/v1/datasets" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
            --data-binary @- | jq -r .id)
    [[ -n $id && $id != null ]] || die "cannot create the dataset"
    sha_mbps >/dev/null # SHA_CPU is set in a subshell otherwise
    sha_cpu=$SHA_CPU
    sha_before=$(sha_mbps)
    # Reset the peak-RSS mark (VmHWM) so that it measures the upload only (Linux >= 4.0).
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || echo "bench-datasets: cannot reset VmHWM; the peak includes start-up" >&2
    base=$(rss_kib VmRSS)
    c0=$(cpu_s)
    t0=$(now)
    if [[ $method == put ]]; then
        code=$(timeout "$LIMIT" curl -s -o "$TMP/out" -w '%{http_code}' -X PUT "$B/api/v1/datasets/$id/content" \
            -H "Authorization: Bearer $TOKEN" -H 'Content-Type: text/csv' -H 'Expect:' -T "$TMP/data.csv") || true
        [[ $code == 204 || $code == 200 ]] || { cat "$TMP/out" >&2; die "PUT answered $code"; }
    else
        off=0
        for part in "$TMP"/part.*; do
            len=$(stat -c %s "$part")
            code=$(timeout "$LIMIT" curl -s -o "$TMP/out" -w '%{http_code}' -X PATCH "$B/api/v1/datasets/$id/content" \
                -H "Authorization: Bearer $TOKEN" -H 'Tus-Resumable: 1.0.0' \
                -H 'Content-Type: application/offset+octet-stream' -H "Upload-Offset: $off" \
                -H "Upload-Length: $size" -H 'Expect:' -T "$part") || true
            [[ $code == 204 ]] || { cat "$TMP/out" >&2; die "PATCH at $off answered $code"; }
            off=$((off + len))
        done
    fi
    t1=$(now)
    c1=$(cpu_s)
    peak=$(rss_kib VmHWM)
    sha_after=$(sha_mbps)
    got=$(curl -sf "$B/api/v1/datasets/$id" -H "Authorization: Bearer $TOKEN")
    [[ $(jq -r .status <<<"$got") == ready ]] || die "dataset not ready: $(jq -c .report <<<"$got")"
    [[ $(jq -r .sha256 <<<"$got") == "$want" ]] || die "SHA-256 differs from sha256sum"
    curl -sf -o /dev/null -X DELETE "$B/api/v1/datasets/$id" -H "Authorization: Bearer $TOKEN" ||
        die "cannot delete the dataset"
    results+=("$(awk -v be="$2" -v m="$method" -v n="$size" -v a="$t0" -v b="$t1" -v s1="$sha_before" \
        -v s2="$sha_after" -v base="$base" -v peak="$peak" -v c0="$c0" -v c1="$c1" -v sc="$sha_cpu" 'BEGIN {
        up = n / (b - a) / 1e6; sha = (s1 + s2) / 2
        printf "%s %s %.1f %.1f %.1f %.1f %.2f %.1f %.2f %.2f", be, m, up, b - a, s1, s2, up / sha, (peak - base) / 1024, c1 - c0, sc }')")
    echo "bench-datasets: $2 $method done" >&2
}

results=()
for be in $BACKENDS; do
    if [[ $be == sqlite ]]; then
        start_dcmsd ""
    else
        # A directory of its own: when run as root, pg-cluster.sh chowns it to postgres.
        PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench-datasets-pg.XXXXXX")
        PGURL=$("$ROOT/scripts/pg-cluster.sh" start "$PGDIR" 2>"$TMP/pg-cluster.log") || {
            cat "$TMP/pg-cluster.log" >&2
            die "cannot start a PostgreSQL cluster"
        }
        start_dcmsd "$PGURL"
    fi
    upload tus "$be"
    upload put "$be"
    stop_dcmsd
    if [[ -n $PGDIR ]]; then
        "$ROOT/scripts/pg-cluster.sh" stop "$PGDIR" >/dev/null 2>&1 || die "cannot stop the PostgreSQL cluster"
        rm -rf "$PGDIR"
        PGDIR=""
    fi
done

printf '\n%s bytes (%s rows); tus PATCH chunks of %s bytes; load average before: %s\n' "$size" \
    "$(($(wc -l <"$TMP/data.csv") - 1))" "$CHUNK" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-6s %10s %8s %14s %13s %7s %12s %13s %13s\n' backend method "upload MB/s" seconds \
    "sha256sum MB/s" "(after)" ratio "RSS growth" "dcmsd CPU s" "sha256sum CPU s"
for r in "${results[@]}"; do
    read -r be m up secs s1 s2 ratio growth cpu scpu <<<"$r"
    printf '%-9s %-6s %10s %8s %14s %13s %7s %8s MiB %13s %13s\n' "$be" "$m" "$up" "$secs" "$s1" "$s2" "$ratio" \
        "$growth" "$cpu" "$scpu"
done
for r in "${results[@]}"; do
    read -r be m up secs s1 s2 ratio growth cpu scpu <<<"$r"
    awk -v be="$be" -v m="$m" -v up="$up" -v r="$ratio" -v g="$growth" 'BEGIN {
        printf "bench: dataset ingest %s %s = %.1f MB/s, %.2f of sha256sum (%s the 0.5 goal); RSS growth %.1f MiB (%s the 64 MiB goal)\n",
            be, m, up, r, (r >= 0.5) ? "meets" : "below", g, (g <= 64) ? "meets" : "above" }'
done
