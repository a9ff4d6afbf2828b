#!/usr/bin/env bash
# Build the multi-threaded stress programs and run each under LD_PRELOAD=LIB.
#
# Usage: tests/stress/run.sh [LIB [BUILD_DIR]] [-- PROGRAM...]
#   LIB        malloc library to preload (default: $HAKMEM_LIB); an empty
#              string runs without preload (glibc): a sanity run.
#   BUILD_DIR  where the programs are built (default: build/stress, relative
#              to the repository root).
#   PROGRAM    run only these (selftest xthread_free thread_churn api_mt fork_mt trim_fork exit_purge
#              rss_return one_thread)
# Environment: STRESS_SCALE (default 1) multiplies the work of every program;
#   STRESS_TIMEOUT (default 120 x max(1, STRESS_SCALE)) seconds per program;
#   CC (default gcc);
#   API_MT_LAX_ERRNO=1 tolerates failed calls that leave errno unset.
# Prints `PASS name` / `FAIL name (reason)` per program and at the end
# `N passed, M failed`; exits 1 if any failed, 2 on a usage or build error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ARGS=()
ONLY=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; ONLY=("$@"); break; fi
    ARGS+=("$1")
    shift
done
if [ ${#ARGS[@]} -ge 1 ]; then LIB=${ARGS[0]}; else LIB=${HAKMEM_LIB:-}; fi
BUILD=${ARGS[1]:-$ROOT/build/stress}
if [ -n "$LIB" ]; then
    if [ ! -f "$LIB" ]; then echo "run.sh: library not found: $LIB" >&2; exit 2; fi
    LIB=$(readlink -f "$LIB")
fi
SCALE=${STRESS_SCALE:-1}
# 120 s per program at scale 1, proportionally more for larger scales
TIMEOUT=${STRESS_TIMEOUT:-$(awk -v s="$SCALE" 'BEGIN { t = 120 * s; if (t < 120) t = 120; printf "%d", t + 0.5 }')}
CC=${CC:-gcc}

PROGS=(selftest xthread_free thread_churn api_mt fork_mt trim_fork exit_purge rss_return one_thread)
[ ${#ONLY[@]} -gt 0 ] && PROGS=("${ONLY[@]}")

# -fno-builtin-*: gcc must not elide or merge allocation calls.
CFLAGS=(-std=c11 -O2 -g -Wall -Wextra -pthread
        -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free)

mkdir -p "$BUILD"
for p in "${PROGS[@]}"; do
    if [ ! -f "$HERE/$p.c" ]; then echo "run.sh: no such program: $p" >&2; exit 2; fi
    if [ ! -x "$BUILD/$p" ] || [ "$HERE/$p.c" -nt "$BUILD/$p" ] || [ "$HERE/common.h" -nt "$BUILD/$p" ]; then
        if ! "$CC" "${CFLAGS[@]}" "$HERE/$p.c" -o "$BUILD/$p.tmp" -ldl 2>"$BUILD/$p.build.log"; then
            cat "$BUILD/$p.build.log" >&2
            echo "run.sh: build of $p failed" >&2
            exit 2
        fi
        mv "$BUILD/$p.tmp" "$BUILD/$p"
    fi
done

PASSED=0 FAILED=0
for p in "${PROGS[@]}"; do
    out=$BUILD/$p.out err=$BUILD/$p.err
    t0=$(date +%s.%N)
    set +e
    if [ -n "$LIB" ]; then
        timeout -k 5 "$TIMEOUT" env LD_PRELOAD="$LIB" "$BUILD/$p" "$SCALE" >"$out" 2>"$err" </dev/null
    else
        timeout -k 5 "$TIMEOUT" "$BUILD/$p" "$SCALE" >"$out" 2>"$err" </dev/null
    fi
    rc=$?
    set -e
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    cat "$out" >&2
    echo "# $p: ${secs}s" >&2
    if [ "$rc" -eq 0 ] && [ -s "$err" ]; then
        # a clean exit that printed on stderr (ld.so could not preload, or
        # the allocator complained): not a pass
        fail_reason="exit 0 but stderr: $(head -c 300 "$err" | tr '\n' ' ')"
    elif [ "$rc" -eq 0 ]; then
        fail_reason=""
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail_reason="timeout after ${TIMEOUT}s"
    else
        why="status $rc"
        [ "$rc" -gt 128 ] && why="killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
        fail_reason="$why: $(tail -c 300 "$err" | tr '\n' ' ')"
    fi
    if [ -z "$fail_reason" ]; then
        echo "PASS $p"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $p (${fail_reason% })"
        FAILED=$((FAILED + 1))
    fi
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
