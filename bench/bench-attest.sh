#!/usr/bin/env bash
# bench/bench-attest.sh — attestation verification throughput per core,
# next to the raw ECDSA P-384 verify rate of `openssl speed` in the same run.
#
# Usage: bench/bench-attest.sh   (`make bench` runs it after the HTTP bench)
#
# Environment:
#   DCMS_BUILD_DIR           build directory holding bench/bench_attest (default: build)
#   DCMS_BENCH_ATTEST_DOC    document to verify (default: a real AWS document
#                            from tests/vectors/nitro)
#   DCMS_BENCH_SECONDS       seconds per measurement (default 3)
#
# Runs bench_attest (single thread, verification at the document's own time,
# warm chain cache, then cold) and `openssl speed -seconds N ecdsap384`, and
# prints documents/s, openssl verify/s and their ratio (goal: >= 0.80). Exits
# 1 if either run fails; the ratio itself is reported, not enforced.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=${DCMS_BUILD_DIR:-$ROOT/build}
BIN=$BUILD/bench/bench_attest
DOC=${DCMS_BENCH_ATTEST_DOC:-$ROOT/tests/vectors/nitro/capejs_attestation_20220915.cbor}
SECONDS_EACH=${DCMS_BENCH_SECONDS:-3}

die() {
    echo "bench-attest: $*" >&2
    exit 1
}

[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_SECONDS must be a positive integer"
[[ -x $BIN ]] || die "no $BIN (build first: make build, or set DCMS_BUILD_DIR)"
[[ -r $DOC ]] || die "cannot read $DOC (set DCMS_BENCH_ATTEST_DOC)"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"

echo "bench-attest: verifying $(basename "$DOC") for ${SECONDS_EACH}s on one thread"
out=$(timeout $((SECONDS_EACH * 3 + 30)) "$BIN" "$DOC" "$SECONDS_EACH") || die "bench_attest failed"
echo "$out" | sed 's/^/  /'
warm=$(echo "$out" | sed -n 's/^attest_warm_docs_per_s=//p')
[[ -n $warm ]] || die "no result from bench_attest"

echo "bench-attest: openssl speed -seconds $SECONDS_EACH ecdsap384"
speed=$(timeout $((SECONDS_EACH * 2 + 30)) openssl speed -seconds "$SECONDS_EACH" ecdsap384 2>/dev/null) ||
    die "openssl speed failed"
verify=$(echo "$speed" | awk '/ecdsa \(nistp384\)/ {print $NF}' | tail -1)
[[ -n $verify ]] || die "cannot find the nistp384 verify/s in openssl speed output"
echo "  openssl_ecdsap384_verify_per_s=$verify"

ratio=$(awk -v a="$warm" -v b="$verify" 'BEGIN {printf "%.2f", a / b}')
goal=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.80) ? "meets" : "below"}')
printf 'bench: attestation verify = %s docs/s per core, openssl ecdsap384 verify = %s/s, ratio %s (%s the 0.80 goal)\n' \
    "$warm" "$verify" "$ratio" "$goal"
