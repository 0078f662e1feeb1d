#!/usr/bin/env bash
# The whole test suite, as `make test` runs it:
#   1. release build: unit tests and fuzz-corpus replays (ctest), format check,
#      no banned call in src/ or workload/ (scripts/check-banned.sh), dcms/http.h
#      only in the HTTP layer and *_http.c files (scripts/check-boundaries.sh)
#   2. a throwaway PostgreSQL 15 cluster on 127.0.0.1 (scripts/pg-cluster.sh)
#   3. store unit tests against it, API tests against SQLite and PostgreSQL,
#      the browser tests (tests/browser: chromium + the web UI) on both, each
#      run bounded by DCMS_TEST_BROWSER_BUDGET_S (default 240 s), and the
#      multi-node scenario (tests/multinode: two dcmsd on that cluster behind
#      nginx, about 25 s, bounded by DCMS_TEST_MULTINODE_BUDGET_S, default 90 s)
#   4. the same again in the sanitizer build (ASan + UBSan)
#   3a. the fault suite (tests/faults/: kill -9 in a write burst, a full disk,
#      SIGTERM with a slow request, PostgreSQL restarted under load) on both
#      backends, release build only (about 15 s for SQLite, 35 s for
#      PostgreSQL; the disk-full case needs root)
#   3b. once, PostgreSQL over TLS: a second throwaway cluster that requires
#      TLS (scripts/pg-cluster.sh start DIR --ssl, sslmode=verify-full), the
#      store unit tests and tests/api/tls.test.mjs against it (about 60 s)
#   4b. the HTTPS listener scanned by testssl.sh (scripts/tls-scan.sh, release
#      build, 70-150 s depending on the load, killed at 180 s)
#   5. every libFuzzer target for a bounded time (ASan + UBSan; 60 s for the
#      attestation parser, DCMS_TEST_FUZZ_SECONDS, default 15, for the others)
# It ends with one line "N passed, N failed" and exits non-zero on any failure.
#   scripts/test.sh          everything
#   scripts/test.sh --san    only the sanitizer build (make san)
#   scripts/test.sh --quick  only the release build (no sanitizers)
#   scripts/test.sh --fuzz   only the bounded fuzzing
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-all}

passed=0
failed=0
failures=()
logdir=$(mktemp -d /tmp/dcms-test.XXXXXX)
pgdir=$(mktemp -d /tmp/dcms-pg.XXXXXX) # directly under /tmp: the postgres user must reach it
pgtlsdir=$(mktemp -d /tmp/dcms-pgtls.XXXXXX)

cleanup() {
    scripts/pg-cluster.sh stop "$pgdir" >/dev/null 2>&1 || rm -rf "$pgdir"
    scripts/pg-cluster.sh stop "$pgtlsdir" >/dev/null 2>&1 || rm -rf "$pgtlsdir"
    rm -rf "$logdir"
}
trap cleanup EXIT

note() { printf '\n== %s\n' "$*"; }

# ctest prints "NN% tests passed, F tests failed out of T".
count_ctest() {
    local name=$1 log=$2 line total fail
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures+=("$name: ctest did not run")
        return
    fi
    fail=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + total - fail)); failed=$((failed + fail))
    [ "$fail" -eq 0 ] || failures+=("$name: $fail failed (see above)")
}

# node --test with the TAP reporter ends with "# pass N" and "# fail N".
count_tap() {
    local name=$1 log=$2 p f
    p=$(grep -E '^# pass [0-9]+' "$log" | tail -1 | awk '{print $3}')
    f=$(grep -E '^# fail [0-9]+' "$log" | tail -1 | awk '{print $3}')
    if [ -z "$p" ] || [ -z "$f" ]; then
        failed=$((failed + 1)); failures+=("$name: node --test did not run")
        return
    fi
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -eq 0 ] || failures+=("$name: $f failed (see above)")
}

# Every failing test of a TAP log, at any depth (node --test nests a file's
# subtests under its describe blocks, so the top-level "not ok" only says
# "1 subtest failed"), each with its YAML block (the assertion, the message,
# the stack), at most 120 lines per failure and $2 lines in all.
tap_failures() {
    awk '
        /^ *not ok / { infail = 1; n = 0; print "----"; print; next }
        infail && /^ *---$/ { inyaml = 1 }
        infail && inyaml { if (n++ < 120) print; if (/^ *\.\.\.$/) { infail = 0; inyaml = 0 }; next }
        infail { infail = 0 }
    ' "$1" | head -"$2"
    # When something failed: each dcmsd that ended without stop() (a crash, a sanitizer
    # report; or a test's own kill), with its stderr tail (tests/api/lib/server.mjs).
    if grep -q '^ *not ok ' "$1"; then grep -A100 'exited without stop()' "$1" | head -300; fi
}

build() {
    local preset=$1 dir=$2
    note "build ($preset)"
    { [ -f "$dir/build.ninja" ] || cmake --preset "$preset" >/dev/null; } &&
        cmake --build --preset "$preset" || { failed=$((failed + 1)); failures+=("build $preset failed"); return 1; }
}

run_ctest() {
    local label=$1 dir=$2 log="$logdir/ctest-$1.log"
    note "unit tests and corpus replays ($label)"
    ctest --test-dir "$dir" --output-on-failure -j2 2>&1 | tee "$log" | grep -vE 'Start +[0-9]+:|Test +#[0-9]+: .* Passed'
    count_ctest "ctest $label" "$log"
}

# tests/api/ includes cli.test.mjs, which runs the `dcms` client built beside
# $bin (build/dcms, build-dev/dcms) through docs/cli.md's flow; each of its
# cases has a 120 s budget per backend (the flow, which trains models, 180 s).
run_api() {
    local label=$1 bin=$2 backend=$3 log="$logdir/api-$1-$3.log"
    note "API tests ($label, $backend)"
    DCMS_BIN="$bin" DCMS_TEST_BACKEND="$backend" \
        node --test --test-concurrency=1 --test-reporter=tap tests/api/ >"$log" 2>&1
    grep -E '^(not ok|# (tests|pass|fail|skipped))' "$log"
    tap_failures "$log" 400
    count_tap "api $label $backend" "$log"
}

# tests/browser: Debian's chromium driven by playwright-core against a real dcmsd.
run_browser() {
    local label=$1 bin=$2 backend=$3 log="$logdir/browser-$1-$3.log" budget=${DCMS_TEST_BROWSER_BUDGET_S:-360}
    note "browser tests ($label, $backend; budget ${budget}s)"
    local t0=$SECONDS
    DCMS_BIN="$bin" DCMS_TEST_BACKEND="$backend" timeout -k 10 "$budget" \
        node --test --test-concurrency=1 --test-reporter=tap tests/browser/ >"$log" 2>&1
    local rc=$?
    grep -E '^(not ok|# (tests|pass|fail|skipped)|# .*chromium)' "$log"
    tap_failures "$log" 400
    echo "browser tests took $((SECONDS - t0)) s"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        failed=$((failed + 1)); failures+=("browser $label $backend: over the ${budget}s budget")
        return
    fi
    count_tap "browser $label $backend" "$log"
}

start_pg() {
    note "PostgreSQL test cluster"
    if DCMS_TEST_PG_URL=$(scripts/pg-cluster.sh start "$pgdir" 2>"$logdir/pg.log"); then
        export DCMS_TEST_PG_URL DCMS_TEST_PG_DIR="$pgdir"
        echo "started on ${DCMS_TEST_PG_URL##*@}"
    else
        cat "$logdir/pg.log"
        failed=$((failed + 1)); failures+=("could not start PostgreSQL")
    fi
}

format_check() {
    note "format (clang-format --dry-run --Werror)"
    if make -s fmt-check >"$logdir/fmt.log" 2>&1; then
        passed=$((passed + 1)); echo "format ok"
    else
        head -40 "$logdir/fmt.log"
        failed=$((failed + 1)); failures+=("format: run make fmt")
    fi
}

# A check script: passes when it exits 0 (its output shown), else fails with `hint`.
script_check() {
    local what=$1 script=$2 log=$logdir/$(basename "$2" .sh).log hint=$3
    note "$what ($script)"
    if "$script" >"$log" 2>&1; then
        passed=$((passed + 1)); cat "$log"
    else
        head -40 "$log"
        failed=$((failed + 1)); failures+=("$hint")
    fi
}

banned_check() {
    script_check "banned calls" scripts/check-banned.sh "banned calls: see include/dcms/banned.h"
}

boundaries_check() {
    script_check "module boundaries" scripts/check-boundaries.sh \
        "module boundaries: dcms/http.h outside the HTTP layer (scripts/check-boundaries.sh)"
}

run_faults() {
    local backend=$1 log="$logdir/faults-$1.log"
    note "fault suite ($backend)"
    DCMS_BIN=build/dcmsd DCMS_TEST_BACKEND="$backend" \
        node --test --test-concurrency=1 --test-reporter=tap tests/faults/ >"$log" 2>&1
    grep -E '^(not ok|ok .*# SKIP|# (tests|pass|fail|skipped))' "$log"
    tap_failures "$log" 200
    count_tap "faults $backend" "$log"
}

# PostgreSQL with TLS required and sslmode=verify-full: the store unit tests and the TLS API
# tests (which also check that a wrong CA is refused at start). Release build only.
pg_tls_pass() {
    note "PostgreSQL over TLS (sslmode=verify-full)"
    local url log="$logdir/ctest-pgtls.log"
    if ! url=$(scripts/pg-cluster.sh start "$pgtlsdir" --ssl 2>"$logdir/pgtls.log"); then
        cat "$logdir/pgtls.log"
        failed=$((failed + 1)); failures+=("could not start PostgreSQL with TLS")
        return
    fi
    DCMS_TEST_PG_URL="$url" DCMS_TEST_PG_DIR="$pgtlsdir" \
        ctest --test-dir build -R '^unit\.store\..*_pg$' --output-on-failure -j2 2>&1 | tee "$log" |
        grep -vE 'Start +[0-9]+:|Test +#[0-9]+: .* Passed'
    count_ctest "ctest store over TLS" "$log"
    log="$logdir/api-pgtls.log"
    DCMS_BIN=build/dcmsd DCMS_TEST_BACKEND=postgres DCMS_TEST_PG_URL="$url" \
        node --test --test-concurrency=1 --test-reporter=tap tests/api/tls.test.mjs >"$log" 2>&1
    grep -E '^(not ok|# (tests|pass|fail|skipped))' "$log"
    tap_failures "$log" 200
    count_tap "api tls postgres-over-TLS" "$log"
    scripts/pg-cluster.sh stop "$pgtlsdir" >/dev/null 2>&1
}

# tests/multinode: two dcmsd on the test cluster behind nginx (PostgreSQL only; budget 90 s).
run_multinode() {
    local label=$1 bin=$2 log="$logdir/multinode-$1.log" budget=${DCMS_TEST_MULTINODE_BUDGET_S:-90}
    note "multi-node scenario ($label, postgres; budget ${budget}s)"
    local t0=$SECONDS
    DCMS_BIN="$bin" DCMS_TEST_BACKEND=postgres timeout -k 10 "$budget" \
        node --test --test-concurrency=1 --test-reporter=tap tests/multinode/ >"$log" 2>&1
    local rc=$?
    grep -E '^(not ok|# (tests|pass|fail|skipped))' "$log"
    tap_failures "$log" 200
    echo "multi-node scenario took $((SECONDS - t0)) s"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        failed=$((failed + 1)); failures+=("multinode $label: over the ${budget}s budget")
        return
    fi
    count_tap "multinode $label" "$log"
}

faults_both() {
    run_faults sqlite
    [ -n "${DCMS_TEST_PG_URL:-}" ] && run_faults postgres
}

tls_scan() {
    script_check "TLS scan, testssl.sh" scripts/tls-scan.sh \
        "TLS scan: a finding of MEDIUM or above, or an old protocol (scripts/tls-scan.sh)"
}

suite() {
    local label=$1 preset=$2 dir=$3
    build "$preset" "$dir" || return
    run_ctest "$label" "$dir"
    run_api "$label" "$dir/dcmsd" sqlite
    [ -n "${DCMS_TEST_PG_URL:-}" ] && run_api "$label" "$dir/dcmsd" postgres
    [ -n "${DCMS_TEST_PG_URL:-}" ] && run_multinode "$label" "$dir/dcmsd"
    run_browser "$label" "$dir/dcmsd" sqlite
    [ -n "${DCMS_TEST_PG_URL:-}" ] && run_browser "$label" "$dir/dcmsd" postgres
}

run_fuzz() {
    note "fuzzing (libFuzzer, ASan + UBSan, bounded)"
    build fuzz build-fuzz || return
    local secs=${DCMS_TEST_FUZZ_SECONDS:-15} t bin n
    for dir in tests/fuzz/*/; do
        t=$(basename "$dir")
        bin=build-fuzz/tests/fuzz/fuzz_$t
        [ -x "$bin" ] || continue
        n=$secs
        [ "$t" = attest ] && n=60
        rm -rf "$logdir/fuzz-$t" && mkdir -p "$logdir/fuzz-$t"
        if "$bin" -max_total_time="$n" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$logdir/fuzz-$t/" "$logdir/fuzz-$t" "$dir/corpus" \
            >"$logdir/fuzz-$t.log" 2>&1; then
            passed=$((passed + 1))
            echo "fuzz $t: $(grep -oE 'stat::number_of_executed_units: [0-9]+' "$logdir/fuzz-$t.log" | awk '{print $2}') runs in ${n}s, no finding"
        else
            grep -E '==ERROR|SUMMARY|Test unit written' "$logdir/fuzz-$t.log" | head -5
            failed=$((failed + 1)); failures+=("fuzz $t found a crash (see above)")
        fi
    done
}

[ "$mode" = --fuzz ] || start_pg
case "$mode" in
--san) suite san dev build-dev ;;
--quick) format_check; banned_check; boundaries_check; suite release release build; faults_both; pg_tls_pass; tls_scan ;;
--fuzz) run_fuzz ;;
*) format_check; banned_check; boundaries_check; suite release release build; faults_both; pg_tls_pass; tls_scan; suite san dev build-dev; run_fuzz ;;
esac

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
