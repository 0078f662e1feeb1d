#!/usr/bin/env bash
# bench/bench-enclaves.sh — the local enclave backend: latency from start()
# to a verified attestation document (p50/p99), and how many idle enclaves
# the machine holds at once.
#
# Usage: bench/bench-enclaves.sh   (`make bench` runs it after the HTTP bench)
#
# Environment:
#   DCMS_BUILD_DIR               build directory (default: build)
#   DCMS_BENCH_ENCLAVE_RUNS      start+attest+verify runs for the latency (default 50)
#   DCMS_BENCH_ENCLAVE_MAX       concurrent enclaves to try before stopping (default 256)
#
# Needs user namespaces (unprivileged or as root). Prints bench_enclaves'
# key=value lines and a summary line; exits 1 if any run fails, if not every
# enclave started is RUNNING, or if the last one's document does not verify.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=${DCMS_BUILD_DIR:-$ROOT/build}
BIN=$BUILD/bench/bench_enclaves
WORKLOAD=$BUILD/workload/dcms-workload
RUNS=${DCMS_BENCH_ENCLAVE_RUNS:-50}
MAX=${DCMS_BENCH_ENCLAVE_MAX:-256}

die() {
    echo "bench-enclaves: $*" >&2
    exit 1
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_ENCLAVE_RUNS must be a positive integer"
[[ $MAX =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_ENCLAVE_MAX must be a positive integer"
[[ -x $BIN && -x $WORKLOAD ]] || die "no $BIN or $WORKLOAD (build first: make build, or set DCMS_BUILD_DIR)"

echo "bench-enclaves: $RUNS starts to a verified attestation, then up to $MAX idle enclaves"
out=$(timeout $((RUNS + MAX + 120)) "$BIN" "$WORKLOAD" "$RUNS" "$MAX" 2>/dev/null) ||
    { echo "$out" | sed 's/^/  /'; die "bench_enclaves failed"; }
echo "$out" | sed 's/^/  /'
get() { echo "$out" | sed -n "s/^$1=//p"; }
printf 'bench: enclave start to verified attestation p50 = %s ms, p99 = %s ms; %s concurrent idle enclaves (cap %s), %s KiB RSS each\n' \
    "$(get enclave_start_attest_p50_ms)" "$(get enclave_start_attest_p99_ms)" \
    "$(get enclave_concurrent)" "$(get enclave_concurrent_cap)" "$(get enclave_rss_kib_each)"
