#!/usr/bin/env bash
# bench/bench-trainer.sh — trainer throughput (examples x epochs per second)
# natively with dcms-trainer-cli, and DP-SGD's cost per epoch against
# non-private training of the same model in the same run.
#
# Usage: bench/bench-trainer.sh   (`make bench` runs it)
#
# Environment:
#   DCMS_BUILD_DIR        build directory holding dcms-trainer-cli (default: build)
#   DCMS_BENCH_REPEAT     runs per configuration; the best is kept (default 3)
#
# Data: tests/data/breast_cancer.csv, split modulo 5/4 (456 training rows).
# Throughput counts training rows x epochs over the training time the CLI
# measures in CPU time (parsing and file I/O excluded; CPU time because
# the machine may be shared), with the per-epoch evaluation
# the enclave trainer does for its progress frames ("with progress") and
# without it (--quiet). The figure inside the sandbox is added once the
# training service runs dcms-trainer in an enclave (issue 16); this script
# prints the native baseline it will be compared with. DP-SGD's goal:
# <= 3x the non-private seconds per epoch. Ratios are reported, not enforced.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=${DCMS_BUILD_DIR:-$ROOT/build}
CLI=$BUILD/dcms-trainer-cli
CSV=$ROOT/tests/data/breast_cancer.csv
REPEAT=${DCMS_BENCH_REPEAT:-3}

die() {
    echo "bench-trainer: $*" >&2
    exit 1
}
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "DCMS_BENCH_REPEAT must be a positive integer"
[[ -x $CLI ]] || die "no $CLI (build first: make build, or set DCMS_BUILD_DIR)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

SPLIT='"label":"diagnosis","split":{"method":"modulo","folds":5,"holdout_fold":4}'
ROWS=456

# best_seconds NAME CONFIG [--quiet]: the lowest train_cpu_seconds of REPEAT runs.
best_seconds() {
    local name=$1 cfg=$2 quiet=${3:-} best=""
    printf '{%s,%s}' "$SPLIT" "$cfg" >"$TMP/$name.json"
    for _ in $(seq "$REPEAT"); do
        timeout 600 "$CLI" --csv "$CSV" --config "$TMP/$name.json" --out "$TMP/$name.st" \
            --metrics "$TMP/$name.metrics" $quiet >/dev/null || die "$name: dcms-trainer-cli failed"
        s=$(sed -n 's/.*"train_cpu_seconds": *\([0-9.e+-]*\).*/\1/p' "$TMP/$name.metrics")
        [[ -n $s ]] || die "$name: no train_cpu_seconds"
        best=$(awk -v a="$s" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
    done
    echo "$best"
}

report() { # name epochs config
    local name=$1 epochs=$2 cfg=$3 q p
    q=$(best_seconds "$name" "$cfg" --quiet)
    p=$(best_seconds "$name-p" "$cfg")
    awk -v n="$name" -v e="$epochs" -v r=$ROWS -v q="$q" -v p="$p" 'BEGIN {
        printf "  %-34s %10.0f ex*ep/s (%.3fs)   with progress %10.0f ex*ep/s (%.3fs)\n",
               n, r * e / q, q, r * e / p, p }'
}

echo "bench-trainer: native dcms-trainer-cli, best of $REPEAT, $ROWS training rows"
report "logistic full-batch sgd x1000" 1000 '"model":"logistic_regression","epochs":1000,"learning_rate":0.1'
report "logistic batch 64 adam x200" 200 '"model":"logistic_regression","optimizer":"adam","batch_size":64,"epochs":200,"learning_rate":0.01'
report "mlp 16 full-batch sgd x500" 500 '"model":"mlp","hidden":[16],"epochs":500,"learning_rate":0.1'
report "mlp 64-32 batch 32 adam x50" 50 '"model":"mlp","hidden":[64,32],"optimizer":"adam","batch_size":32,"epochs":50,"learning_rate":0.001'
echo "  inside the sandbox: not measured yet (needs the training service of issue 16)"

echo "bench-trainer: DP-SGD against non-private, same model, batch 64, seconds per epoch"
dp_pair() { # name epochs model-config
    local name=$1 epochs=$2 cfg=$3 a b
    a=$(best_seconds "$name-np" "$cfg,\"batch_size\":64,\"epochs\":$epochs" --quiet)
    b=$(best_seconds "$name-dp" "$cfg,\"batch_size\":64,\"epochs\":$epochs,\"dp\":{\"noise_multiplier\":1.0,\"max_grad_norm\":1.0}" --quiet)
    awk -v n="$name" -v e="$epochs" -v a="$a" -v b="$b" 'BEGIN {
        r = b / a
        printf "  %-22s non-private %.3f ms/epoch  DP-SGD %.3f ms/epoch  ratio %.2fx (%s the <= 3x goal)\n",
               n, 1000 * a / e, 1000 * b / e, r, r <= 3 ? "meets" : "misses" }'
}
dp_pair "logistic" 300 '"model":"logistic_regression","learning_rate":0.5'
dp_pair "mlp 16" 200 '"model":"mlp","hidden":[16],"learning_rate":0.1'
dp_pair "mlp 64-32" 50 '"model":"mlp","hidden":[64,32],"learning_rate":0.05'
