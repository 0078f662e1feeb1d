#!/usr/bin/env bash
# bench/bench-datasets.sh — dataset ingest: a synthetic CSV uploaded over
# loopback with one tus PATCH (curl -T, which streams the file), next to `sha256sum` of the same file
# in the same run, and the peak RSS growth of dcmsd during the upload.
#
# Usage: bench/bench-datasets.sh   (`make bench` runs it after the HTTP bench)
#
# Environment:
#   DCMS_BIN                 dcmsd to run (default: build/dcmsd)
#   DCMS_BENCH_DATASET_BYTES size of the CSV (default 1073741824, 1 GiB)
#   DCMS_DATABASE_URL        store for the run (default: SQLite in a temporary directory)
#
# Prints MB/s of the upload (hashing, schema validation, AES-256-GCM and the
# store writes included) and of sha256sum, their ratio (goal >= 0.5), and the
# growth of dcmsd's resident memory from just before the upload to its peak
# during it (goal <= 64 MiB). The goals are reported, not enforced; the run
# fails if the upload does not end `ready` with the file's SHA-256.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
BYTES=${DCMS_BENCH_DATASET_BYTES:-1073741824}

die() {
    echo "bench-datasets: $*" >&2
    exit 1
}

[[ -x $DCMS_BIN ]] || die "no $DCMS_BIN (build first: make build, or set DCMS_BIN)"
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_DATASET_BYTES must be a positive integer"
for c in curl jq python3 sha256sum; do command -v $c >/dev/null 2>&1 || die "$c is not installed"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dcms-bench-datasets.XXXXXX")
pid=""
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-datasets: generating a ${BYTES}-byte CSV"
timeout 900 python3 "$ROOT/scripts/gen-csv.py" --bytes "$BYTES" --columns 30 --out "$TMP/data.csv" \
    --schema "$TMP/schema.json" || die "gen-csv.py failed"
size=$(stat -c %s "$TMP/data.csv")

mkdir -p "$TMP/data"
DCMS_ADMIN_EMAIL=bench@dcms.local DCMS_ADMIN_PASSWORD=bench-admin-passphrase DCMS_LISTEN=127.0.0.1:0 \
    DCMS_DATA_DIR="$TMP/data" DCMS_ACCESS_LOG=false DCMS_DATASET_MAX_BYTES=$((size + 1)) \
    "$DCMS_BIN" 2>"$TMP/log" &
pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$TMP/log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { cat "$TMP/log" >&2; die "dcmsd did not start"; }
B=http://127.0.0.1:$port
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@dcms.local","password":"bench-admin-passphrase"}' | jq -r .access_token)
ID=$(jq -n --slurpfile s "$TMP/schema.json" '{name: "bench", schema: $s[0]}' |
    curl -sf "$B/api/v1/datasets" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @- | jq -r .id)
[[ -n $ID && $ID != null ]] || die "cannot create the dataset"

# Baseline: sha256sum of the same file (warm page cache for both).
cat "$TMP/data.csv" >/dev/null
t0=$(date +%s.%N)
want=$(sha256sum "$TMP/data.csv" | cut -d' ' -f1)
t1=$(date +%s.%N)

rss_kib() { awk -v k="$1" '$1 == k ":" {print $2}' "/proc/$pid/status"; }
# Reset the peak-RSS mark (VmHWM) so it measures the upload only (Linux >= 4.0).
echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || echo "bench-datasets: cannot reset VmHWM; the peak includes start-up" >&2
base=$(rss_kib VmRSS)

t2=$(date +%s.%N)
code=$(curl -s -o "$TMP/patch.out" -w '%{http_code}' -X PATCH "$B/api/v1/datasets/$ID/content" \
    -H "Authorization: Bearer $TOKEN" -H 'Tus-Resumable: 1.0.0' \
    -H 'Content-Type: application/offset+octet-stream' -H 'Upload-Offset: 0' \
    -H "Upload-Length: $size" -H 'Expect:' -T "$TMP/data.csv")
t3=$(date +%s.%N)
peak=$(rss_kib VmHWM)
[[ $code == 204 ]] || { cat "$TMP/patch.out" >&2; die "upload answered $code"; }
got=$(curl -sf "$B/api/v1/datasets/$ID" -H "Authorization: Bearer $TOKEN")
[[ $(jq -r .status <<<"$got") == ready ]] || die "dataset not ready: $(jq -c .report <<<"$got")"
[[ $(jq -r .sha256 <<<"$got") == "$want" ]] || die "SHA-256 differs from sha256sum"

awk -v n="$size" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v base="$base" -v peak="$peak" \
    -v rows="$(jq -r .rows <<<"$got")" 'BEGIN {
    sha = n / (b - a) / 1e6; up = n / (d - c) / 1e6; growth = (peak - base) / 1024
    printf "  size_bytes=%d rows=%d\n  sha256sum_MBps=%.1f\n  upload_MBps=%.1f (%.1f s)\n", n, rows, sha, up, d - c
    printf "  rss_before_MiB=%.1f rss_peak_MiB=%.1f\n", base / 1024, peak / 1024
    printf "bench: dataset ingest = %.1f MB/s, sha256sum = %.1f MB/s, ratio %.2f (%s the 0.5 goal); RSS growth %.1f MiB (%s the 64 MiB goal)\n",
        up, sha, up / sha, (up / sha >= 0.5) ? "meets" : "below", growth, (growth <= 64) ? "meets" : "above"
}'
