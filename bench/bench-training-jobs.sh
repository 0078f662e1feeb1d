#!/usr/bin/env bash
# bench/bench-training-jobs.sh — the training service's overhead per job:
# POST -> running and last epoch -> succeeded, p50/p99 (goal p50 <= 100 ms
# each), with the worker's steps. See bench/bench-training-jobs.mjs.
#
# Usage: bench/bench-training-jobs.sh   (`make bench` runs it)
#
# Environment:
#   DCMS_BIN                    dcmsd (default: build/dcmsd)
#   DCMS_BENCH_TRAINING_JOBS    jobs, one after the other (default 20, at most 500)
#   DCMS_BENCH_TRAINING_EPOCHS  epochs of each job's logistic regression (default 50)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DCMS_BIN=${DCMS_BIN:-$ROOT/build/dcmsd}
[[ -x $DCMS_BIN ]] || { echo "bench-training-jobs: no $DCMS_BIN (build first)" >&2; exit 1; }
[[ -d $ROOT/node_modules ]] || { echo "bench-training-jobs: run npm ci first" >&2; exit 1; }
# (the test helpers it borrows load node:test, whose empty TAP summary is dropped)
set -o pipefail
timeout 900 node "$ROOT/bench/bench-training-jobs.mjs" | grep -v -E '^(TAP version|1\.\.0$|# )'

