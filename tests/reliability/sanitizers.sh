#!/usr/bin/env bash
# The runtime under AddressSanitizer and UndefinedBehaviorSanitizer
# (binaries built by tests/reliability.mk in DIR):
#   mt_hak_asan        tests/tsan/mt_hak.c with the runtime compiled in, ASan+UBSan
#   fuzz_api_asan      the fuzz harness's plain driver, ASan+UBSan
#   ubsan/unit         the Check suite linked with a UBSan build of the library
#   ubsan/libhakmem.so the stress programs (tests/stress) preloading a UBSan build
# UBSan stops at the first report (-fno-sanitize-recover); ASan at its first.
# Usage: tests/reliability/sanitizers.sh DIR
# Prints PASS/FAIL lines and `N passed, M failed`; exit 1 on a failure.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(cd "$1" && pwd)
PASSED=0 FAILED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1 ($2)"; FAILED=$((FAILED + 1)); }
why() { grep -aE 'ERROR: |runtime error|SUMMARY|FAIL|Failures: [1-9]|Errors: [1-9]|^[^:]+:[0-9]+:[EF]:' "$1" | head -n 3 | tr '\n' ' ' | cut -c1-400; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run NAME LOG CMD...: PASS when CMD exits 0 and no sanitizer spoke
run() {
    local name=$1 log=$2 rc=0
    shift 2
    timeout -k 10 600 "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ] && ! grep -aqE 'runtime error|ERROR: AddressSanitizer' "$log"; then
        pass "$name"
    else
        fail "$name" "status $rc: $(why "$log")"
        grep -aA 30 -E 'runtime error|ERROR: AddressSanitizer' "$log" | head -n 40 | sed 's/^/# /' >&2
    fi
}

run "asan+ubsan mt_hak (tests/tsan/mt_hak.c)" "$DIR/mt_hak_asan.log" "$DIR/mt_hak_asan"
run "asan+ubsan fuzz_api (${ASAN_FUZZ_RUNS:-1500} inputs)" "$DIR/fuzz_api_asan.log" "$DIR/fuzz_api_asan" -n "${ASAN_FUZZ_RUNS:-1500}"
run "ubsan unit (tests/unit, Check)" "$DIR/ubsan/unit.log" "$DIR/ubsan/unit"

# the stress programs, each its own line
log=$DIR/ubsan/stress.log
bash "$HERE/../stress/run.sh" "$DIR/ubsan/libhakmem.so" "$DIR/ubsan/stress" >"$log" 2>"$log.err"
while read -r verdict name rest; do
    case $verdict in
        PASS) pass "ubsan stress $name" ;;
        FAIL) fail "ubsan stress $name" "${rest#(}" ;;
    esac
done < <(grep -E '^(PASS|FAIL) ' "$log")
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$log"; then
    fail "ubsan stress" "tests/stress/run.sh did not finish: $(tail -n 3 "$log.err" | tr '\n' ' ')"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
