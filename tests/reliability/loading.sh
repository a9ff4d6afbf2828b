#!/usr/bin/env bash
# How hakmem can be loaded (README.md): preloaded, linked in, as the
# dependency of a dlopen()ed shared object, preloaded under a getrandom()
# that fails and counts its calls (none, errno untouched at start-up),
# preloaded under a library whose
# fork handlers allocate, and linked in under valgrind.
#
# Usage: tests/reliability/loading.sh BUILD_DIR GEN_DIR [BUILD_DIR GEN_DIR]...
#   e.g. loading.sh build/default generated/default build/tlsstatic generated/tlsstatic
# Every build is tested; its name (the directory's) prefixes its lines.
# Prints PASS/FAIL/SKIP lines and `N passed, M failed`; exit 1 on a failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: $0 BUILD_DIR GEN_DIR..." >&2; exit 2; }
CC=${CC:-gcc}
PY=$(command -v python3 || echo /usr/bin/python3)

T=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-load.XXXXXX")
trap 'rm -rf "$T"' EXIT

PASSED=0 FAILED=0 SKIPPED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1 ($2)"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1 ($2)"; SKIPPED=$((SKIPPED + 1)); }
oneline() { tr '\n' ' ' <"$1" | cut -c1-400; }

CFLAGS=(-std=gnu11 -O1 -g -Wall -Wextra -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc)

while [ $# -ge 2 ]; do
    B=$(cd "$1" && pwd) GEN=$(cd "$2" && pwd)
    shift 2
    V=$(basename "$B")
    W=$T/$V
    mkdir -p "$W"
    LIB=$B/libhakmem.so
    if [ ! -f "$LIB" ]; then fail "$V: build" "$LIB not found"; continue; fi
    # hakmem's class for a 100-byte request, from the resolved spec
    EXPECT=$("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
sizes = [c["size"] for c in s["tiny"]["classes"]] + list(s["mid"]["classes"])
print(min(x for x in sizes if x >= 100))' "$GEN/spec.json")

    # (a) preloaded
    "$CC" "${CFLAGS[@]}" -DROLE_PROBE -o "$W/probe" "$HERE/loading.c" -ldl 2>"$W/build.log" ||
        { fail "$V: build probe" "$(oneline "$W/build.log")"; continue; }
    if LD_PRELOAD=$LIB "$W/probe" "$EXPECT" >"$W/out" 2>&1 &&
        HAKMEM_SHOW_SPEC=1 LD_PRELOAD=$LIB /bin/true 2>"$W/spec" && grep -q "^hakmem: spec $V " "$W/spec"; then
        pass "$V: preloaded"
    else
        fail "$V: preloaded" "$(oneline "$W/out") $(oneline "$W/spec")"
    fi

    # (b) linked in (-lhakmem, rpath)
    if ! "$CC" "${CFLAGS[@]}" -DROLE_PROBE -o "$W/probe_linked" "$HERE/loading.c" \
            -L"$B" -lhakmem -Wl,-rpath,"$B" -ldl 2>"$W/build.log"; then
        fail "$V: linked" "link failed: $(oneline "$W/build.log")"
    elif "$W/probe_linked" "$EXPECT" >"$W/out" 2>&1; then
        pass "$V: linked"
    else
        fail "$V: linked" "$(oneline "$W/out")"
    fi

    # (c) libuser.so depends on libhakmem.so; a plain program dlopen()s it
    if ! "$CC" "${CFLAGS[@]}" -fPIC -shared -DROLE_USER -I"$ROOT/include" -o "$W/libuser.so" "$HERE/loading.c" \
            -L"$B" -lhakmem -Wl,-rpath,"$B" 2>"$W/build.log" ||
        ! "$CC" "${CFLAGS[@]}" -DROLE_DLOPEN -o "$W/dlopen_main" "$HERE/loading.c" -ldl -lpthread 2>>"$W/build.log"; then
        fail "$V: dlopen" "build failed: $(oneline "$W/build.log")"
    else
        # options.tls: static puts the whole cache block in the static TLS area, which a
        # dlopen()ed library cannot have: spec/README.md documents the refusal, and it must be
        # exactly glibc's message.  The default (tls: pointer) needs a few words there and loads.
        static_tls=$(grep -c '^#define HAK_TLS_STATIC 1' "$GEN/hak_spec.h" || true)
        for mode in dlopen dlclose; do
            if [ "$static_tls" = 1 ]; then
                [ $mode = dlclose ] && continue
                (timeout 60 "$W/dlopen_main" "$W/libuser.so" >"$W/out" 2>&1; echo $? >"$W/rc") 2>/dev/null
                rc=$(cat "$W/rc")
                if [ "$rc" -ne 0 ] && grep -q "libhakmem.so: cannot allocate memory in static TLS block" "$W/out"; then
                    pass "$V: dlopen refused as documented (tls: static)"
                else
                    fail "$V: dlopen refused as documented" "status $rc: $(oneline "$W/out")"
                fi
                continue
            fi
            if [ $mode = dlclose ] && [ "$rc" -ne 0 ]; then
                skip "$V: dlopen, dlclose, idle 1.5 s" "dlopen failed"
                continue
            fi
            args=("$W/libuser.so")
            [ $mode = dlclose ] && args+=(--dlclose)
            # (the subshell, not this shell, reports a crash: to /dev/null)
            (timeout 60 "$W/dlopen_main" "${args[@]}" >"$W/out" 2>&1; echo $? >"$W/rc") 2>/dev/null
            rc=$(cat "$W/rc")
            label="$V: dlopen"
            [ $mode = dlclose ] && label="$V: dlopen, dlclose, idle 1.5 s"
            if [ "$rc" -eq 0 ]; then
                pass "$label"
            else
                why="status $rc"
                [ "$rc" -gt 128 ] && why="killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
                fail "$label" "$why: $(oneline "$W/out")"
            fi
        done
    fi

    # (d) start-up needs no entropy and leaves errno alone: under a
    # getrandom() that fails (a kernel before 3.17, a seccomp filter) and
    # counts its calls, hakmem's start-up makes none (the cache key is the
    # region map's address since 2026-11-29) and errno is 0 at main
    if ! "$CC" "${CFLAGS[@]}" -fPIC -shared -DROLE_NORANDOM -o "$W/libnorandom.so" "$HERE/loading.c" \
            2>"$W/build.log" ||
        ! "$CC" "${CFLAGS[@]}" -DROLE_ERRNO -o "$W/errno" "$HERE/loading.c" -ldl 2>>"$W/build.log"; then
        fail "$V: errno at start-up" "build failed: $(oneline "$W/build.log")"
    elif LD_PRELOAD="$W/libnorandom.so $LIB" "$W/errno" >"$W/out" 2>&1; then
        pass "$V: errno left alone at start-up, no getrandom() call"
    else
        fail "$V: errno left alone at start-up, no getrandom() call" "$(oneline "$W/out")"
    fi

    # (e) fork handlers registered before hakmem's (by a library's constructor,
    # run before hakmem's start-up) allocate between its prepare and its
    # parent/child handlers, while it holds its locks: no deadlock
    if ! "$CC" "${CFLAGS[@]}" -fPIC -shared -DROLE_ATFORK -o "$W/libatfork.so" "$HERE/loading.c" \
            -lpthread 2>"$W/build.log" ||
        ! "$CC" "${CFLAGS[@]}" -DROLE_FORK -o "$W/fork" "$HERE/loading.c" -Wl,--no-as-needed \
            -L"$W" -latfork -Wl,-rpath,"$W" -lpthread 2>>"$W/build.log"; then
        fail "$V: fork, earlier handlers allocating" "build failed: $(oneline "$W/build.log")"
    else
        for nest in "" 1; do
            label="$V: fork, earlier handlers allocating"
            [ -n "$nest" ] && label="$label and forking"
            (ATFORK_NEST=$nest LD_PRELOAD=$LIB timeout 60 "$W/fork" >"$W/out" 2>&1; echo $? >"$W/rc") 2>/dev/null
            rc=$(cat "$W/rc")
            if [ "$rc" -eq 0 ]; then
                pass "$label"
            else
                why="status $rc"
                [ "$rc" -eq 124 ] && why="hung (killed after 60 s)"
                [ "$rc" -gt 128 ] && [ "$rc" -ne 124 ] && why="killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
                fail "$label" "$why: $(oneline "$W/out")"
            fi
        done
    fi

    # (f) valgrind memcheck on a program linked with libhakmem.  By default
    # valgrind replaces malloc in every shared object, libhakmem.so included;
    # somalloc=nouserintercepts limits that to libc, so hakmem itself runs.
    if ! command -v valgrind >/dev/null; then
        skip "$V: valgrind" "valgrind not installed"
    elif ! "$CC" "${CFLAGS[@]}" -DROLE_VG -o "$W/vg" "$HERE/loading.c" -L"$B" -lhakmem -Wl,-rpath,"$B" \
            -lpthread 2>"$W/build.log"; then
        fail "$V: valgrind" "link failed: $(oneline "$W/build.log")"
    else
        "$W/vg" >"$W/vg.native" 2>&1
        rc=0
        timeout 300 valgrind --soname-synonyms=somalloc=nouserintercepts \
            --error-exitcode=1 --leak-check=no -q "$W/vg" >"$W/vg.out" 2>"$W/vg.err" || rc=$?
        if [ "$rc" -ne 0 ]; then
            fail "$V: valgrind" "status $rc: $(grep -m 12 '==' "$W/vg.err" | sed 's/^==[0-9]*== //' | tr '\n' '|' | cut -c1-700)"
            sed 's/^/# /' "$W/vg.err" | head -n 80 >&2
        elif ! grep -q "^malloc_usable_size(malloc(100)) = $EXPECT\$" "$W/vg.out"; then
            fail "$V: valgrind" "malloc was not hakmem's under valgrind: $(oneline "$W/vg.out")"
        elif ! cmp -s "$W/vg.native" "$W/vg.out"; then
            fail "$V: valgrind" "output differs from the run without valgrind: $(oneline "$W/vg.out")"
        else
            pass "$V: valgrind"
        fi
    fi
done

if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
    echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
