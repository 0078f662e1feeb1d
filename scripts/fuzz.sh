#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target built by the fuzz preset for
# DCMS_FUZZ_SECONDS seconds (default 30) each, starting from its committed
# corpus. New interesting inputs go to build-fuzz/corpus/<target> (not the
# committed corpus: copy the ones worth keeping by hand); crashes are saved
# in build-fuzz/crashes/ and fail the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${DCMS_FUZZ_SECONDS:-30}
status=0
mkdir -p build-fuzz/crashes
for dir in tests/fuzz/*/; do
    t=$(basename "$dir")
    bin=build-fuzz/tests/fuzz/fuzz_$t
    [ -x "$bin" ] || continue
    work=build-fuzz/corpus/$t
    mkdir -p "$work"
    echo "== fuzz $t for ${secs}s"
    if ! "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build-fuzz/crashes/"$t"- -print_final_stats=1 \
        "$work" "$dir/corpus" 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)'; then
        :
    fi
    if ls build-fuzz/crashes/"$t"-* >/dev/null 2>&1; then
        echo "fuzz $t: crash inputs in build-fuzz/crashes/"; status=1
    fi
done
exit $status
