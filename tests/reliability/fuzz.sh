#!/usr/bin/env bash
# The API fuzzer (fuzz_api.c): libFuzzer for SECONDS from a seed corpus, then
# the plain deterministic driver for RUNS inputs (0: skip it).
#
# Usage: tests/reliability/fuzz.sh DIR SECONDS RUNS
#   DIR holds the binaries (fuzz_api, fuzz_api_libfuzzer) that
#   tests/reliability.mk builds.  FUZZ_CLANG empty: no clang links
#   -fsanitize=fuzzer here, the libFuzzer part is skipped.  KEEP_CORPUS=1
#   grows DIR/fuzz-corpus across runs (make fuzz); otherwise a fresh copy of
#   the seeds is used.  A crash input is kept as DIR/fuzz-crash-*; replay it
#   with `DIR/fuzz_api FILE` or `DIR/fuzz_api_libfuzzer FILE`.
# Prints PASS/FAIL/SKIP lines and `N passed, M failed`; exit 1 on a failure.
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: $0 DIR SECONDS RUNS" >&2; exit 2; }
DIR=$1 SECS=$2 RUNS=$3
PASSED=0 FAILED=0 SKIPPED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1 ($2)"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1 ($2)"; SKIPPED=$((SKIPPED + 1)); }
why() { grep -aE 'fuzz_api: FAIL|ERROR: |runtime error|SUMMARY|deadly signal' "$1" | head -n 3 | tr '\n' ' ' | cut -c1-400; }

SEEDS=$DIR/fuzz-seeds
rm -rf "$SEEDS"
"$DIR/fuzz_api" --write-seeds "$SEEDS" || { fail "fuzz seeds" "could not write $SEEDS"; }

if [ -z "${FUZZ_CLANG:-}" ]; then
    skip "fuzz libFuzzer" "no clang here links -fsanitize=fuzzer,address,undefined"
elif [ ! -x "$DIR/fuzz_api_libfuzzer" ]; then
    fail "fuzz libFuzzer" "$DIR/fuzz_api_libfuzzer was not built"
else
    if [ "${KEEP_CORPUS:-0}" = 1 ]; then
        CORPUS=$DIR/fuzz-corpus
    else
        CORPUS=$DIR/fuzz-corpus-test
        rm -rf "$CORPUS"
    fi
    mkdir -p "$CORPUS"
    cp "$SEEDS"/* "$CORPUS"/
    log=$DIR/fuzz-libfuzzer.log
    t0=$(date +%s)
    rc=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        timeout -k 10 $((SECS + 120)) "$DIR/fuzz_api_libfuzzer" -max_total_time="$SECS" -runs=10000000 \
        -max_len=4096 -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$DIR/fuzz-crash-" "$CORPUS" >"$log" 2>&1 || rc=$?
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    echo "# libFuzzer: $((t1 - t0)) s, ${execs:-?} inputs, $cov, corpus $(ls "$CORPUS" | wc -l) files (log: $log)" >&2
    if [ "$rc" -eq 0 ]; then
        pass "fuzz libFuzzer (${execs:-?} inputs in ${SECS} s, ASan+UBSan)"
    else
        crash=$(grep -aoE "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/Test unit written to //')
        fail "fuzz libFuzzer" "status $rc: $(why "$log") ${crash:+input: $crash}"
        tail -n 60 "$log" | sed 's/^/# /' >&2
    fi
fi

if [ "$RUNS" -gt 0 ]; then
    log=$DIR/fuzz-plain.log
    rc=0
    timeout -k 10 600 "$DIR/fuzz_api" "$SEEDS"/* >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        timeout -k 10 600 "$DIR/fuzz_api" -n "$RUNS" >>"$log" 2>&1 || rc=$?
    fi
    if [ "$rc" -eq 0 ]; then
        pass "fuzz plain driver ($RUNS inputs from a fixed seed, and the seeds)"
    else
        fail "fuzz plain driver" "status $rc: $(why "$log")"
        tail -n 20 "$log" | sed 's/^/# /' >&2
    fi
fi

if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
    echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
