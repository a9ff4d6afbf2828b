#!/usr/bin/env bash
# Real programs under LD_PRELOAD, each run compared with the same run without
# it (stdout, stderr, exit status and the files it writes, byte for byte).
#
# Usage: tests/reliability/programs.sh LIB [CASE...]
#          CPython's regression tests, git with 3000 files, redis-server +
#          redis-benchmark, an xz round trip of 50 MB (README.md)
#        tests/reliability/programs.sh --variants NAME=LIB... [-- CASE...]
#          the smaller set (python churn, sort, sqlite) on every library given:
#          the base side runs once, each library is compared with it
# Prints `PASS name`, `FAIL name (reason)`, `SKIP name (reason)`, then
# `N passed, M failed` (`, K skipped`).  Exit status 1 when a case failed.
# TIMEOUT= (seconds per program, default 180), KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INTEG=$(cd "$HERE/../integration" && pwd)

usage() { echo "usage: $0 LIB [CASE...] | --variants NAME=LIB... [-- CASE...]" >&2; exit 2; }

MODE=default
declare -a NAMES=() LIBS=() ONLY=()
if [ "${1:-}" = --variants ]; then
    MODE=variants
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case $1 in *=*) ;; *) usage ;; esac
        NAMES+=("${1%%=*}")
        LIBS+=("${1#*=}")
        shift
    done
    [ "${1:-}" = -- ] && shift
else
    [ $# -ge 1 ] || usage
    NAMES=(hakmem)
    LIBS=("$1")
    shift
fi
ONLY=("$@")
for i in "${!LIBS[@]}"; do
    if [ ! -f "${LIBS[$i]}" ]; then
        echo "programs.sh: library not found: ${LIBS[$i]}" >&2
        exit 2
    fi
    LIBS[$i]=$(readlink -f "${LIBS[$i]}")
done

T=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-prog.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TIMEOUT=${TIMEOUT:-180}
PY=/usr/bin/python3
# shellcheck source=../lib/preload_harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/preload_harness.sh"

first_line_diff() {
    local d out
    d=$(diff -a "$1" "$2" 2>&1) || true
    out="$(grep -a -m 1 '^<' <<<"$d" | cut -c1-160) $(grep -a -m 1 '^>' <<<"$d" | cut -c1-160)" || true
    out=${out# }
    [ -n "$out" ] || out=$(cmp "$1" "$2" 2>&1 | head -n 1 | sed "s|$T/||g") || true
    echo "${out% }"
}

# compare LABEL BASE PRE: the PASS/FAIL line of one preloaded side.
compare() {
    local label=$1 b=$2 p=$3 f bad=""
    if [ "$(cat "$p/rc")" -ne 0 ]; then
        fail "$label" "preloaded run failed: $(describe_status "$(cat "$p/rc")"): $(tail -c 300 "$p/stderr" | tr '\n' ' ')"
        return 0
    fi
    if ! cmp -s "$b/stdout" "$p/stdout"; then
        fail "$label" "stdout differs: $(first_line_diff "$b/stdout" "$p/stdout")"; return 0
    fi
    if ! cmp -s "$b/stderr" "$p/stderr"; then
        fail "$label" "stderr differs: $(first_line_diff "$b/stderr" "$p/stderr")"; return 0
    fi
    while IFS= read -r -d '' f; do
        f=${f#"$b/out/"}
        if [ ! -f "$p/out/$f" ]; then bad="$f missing in preloaded run"; break; fi
        if ! cmp -s "$b/out/$f" "$p/out/$f"; then bad="$f differs"; break; fi
    done < <(find "$b/out" -type f -print0 | sort -z)
    if [ -z "$bad" ] && [ "$(find "$b/out" -type f | wc -l)" -ne "$(find "$p/out" -type f | wc -l)" ]; then
        bad="the preloaded run wrote other files"
    fi
    if [ -n "$bad" ]; then fail "$label" "$bad"; return 0; fi
    pass "$label"
}

# run_case NAME FUNC: the base side once, then one preloaded side per library.
run_case() {
    local name=$1 fn=$2 i b p label times
    wanted "$name" || return 0
    b=$T/case/$name/base
    side "$b" "$fn" ""
    echo "$RC" >"$b/rc"
    times="base ${SECS}s"
    if [ "$RC" -ne 0 ]; then
        echo "# $name: $times" >&2
        fail "$name" "baseline without preload failed: $(describe_status "$RC"): $(tail -c 300 "$b/stderr" | tr '\n' ' ')"
        return 0
    fi
    for i in "${!LIBS[@]}"; do
        p=$T/case/$name/pre-$i
        side "$p" "$fn" "${LIBS[$i]}"
        echo "$RC" >"$p/rc"
        if [ "$MODE" = variants ]; then label="variant ${NAMES[$i]}: $name"; else label=$name; fi
        times="$times, ${NAMES[$i]} ${SECS}s"
        compare "$label" "$b" "$p"
    done
    echo "# $name: $times" >&2
}

IN=$T/in
mkdir -p "$IN"

# ------------------------------------------------------------ full set -----

# A block of CPython's own regression tests (libpython3.11-testsuite), every
# object through malloc (PYTHONMALLOC=malloc), two worker processes (each
# inherits LD_PRELOAD).  Compared: the exit status and each test's result.
CPYTHON_TESTS=(test_dict test_list test_set test_tuple test_bytes test_unicode test_string
    test_fstring test_json test_re test_collections test_ordered_dict test_userdict test_dictviews
    test_heapq test_sort test_deque test_itertools test_functools test_long test_decimal
    test_array test_struct test_memoryview test_mmap test_gc test_zlib test_hashlib)
case_cpython_tests() {
    local rc=0
    X env PYTHONMALLOC=malloc "$PY" -m test -j2 --timeout 150 "${CPYTHON_TESTS[@]}" >log.txt 2>&1 || rc=$?
    grep -oE '\] test_[a-z0-9_]+ [a-z]+' log.txt | sed 's/^\] //' | sort
    grep -E '^(== )?Tests result' log.txt | sort -u
    echo "regrtest status $rc"
    if [ "$rc" -ne 0 ]; then tail -n 40 log.txt >&2; fi
}

# No test package: a heavy Python workload instead (churn.py at 3 times its
# default scale, every object through malloc).
case_python_heavy() {
    X env PYTHONMALLOC=malloc "$PY" "$INTEG/churn.py" 3
}

case_git() {
    git_identity
    X git init -q -b main repo
    cd repo
    cp -r "$IN/tree/." .
    X git add -A
    X git commit -q -m "3000 files"
    # edit 300 of them, remove 100, add 100
    awk 'BEGIN { for (f = 0; f < 3000; f += 10) { fn = "d" (f % 30) "/f" f ".txt"; print "edited" >> fn; close(fn) } }'
    X git rm -q -- d1/*.txt
    mkdir -p new && awk 'BEGIN { for (f = 0; f < 100; f++) { fn = "new/n" f; print f, "new file" > fn; close(fn) } }'
    X git add -A
    X git commit -q -m "edits"
    X git gc -q
    local fsck=0
    X git fsck --strict --full --no-progress || fsck=$?
    echo "fsck status $fsck"
    X git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    X git log --format='%H %T %s'
    X git diff --shortstat HEAD~1 HEAD
    X git ls-files | wc -l
    X git archive --format=tar HEAD | sha256sum
}

# redis-server on 127.0.0.1, a free port; redis-benchmark with a bounded
# request count; values of 1 B to 1 MiB set and read back through redis-cli.
case_redis() {
    local port pid i
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # started as timeout's child, so that killing $pid stops the server too
    timeout -k 5 "$TIMEOUT" env ${CUR:+LD_PRELOAD="$CUR"} redis-server --bind 127.0.0.1 \
        --port "$port" --save '' --appendonly no --dir "$PWD" --logfile "$PWD/redis.log" \
        --daemonize no &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for i in $(seq 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    local cli=(X redis-cli -h 127.0.0.1 -p "$port")
    "${cli[@]}" ping
    # the server really runs on the preloaded library (or, base side, does not)
    local srv mapped=no
    srv=$(pgrep -P "$pid" -x redis-server || pgrep -P "$pid" | head -n 1)
    grep -q "${CUR:-libhakmem}" "/proc/$srv/maps" && mapped=yes
    if [ "$mapped" = "$([ -n "$CUR" ] && echo yes || echo no)" ]; then
        echo "server allocator as expected"
    else
        echo "server allocator: preload ${CUR:-none}, library mapped: $mapped"
    fi
    X redis-benchmark -h 127.0.0.1 -p "$port" -n 20000 -c 20 -q -r 10000 \
        -t set,get,incr,lpush,rpop,sadd,hset,spop,zadd,lrange_100,mset -d 200 >bench.txt 2>&1
    # each test reports its throughput; the numbers themselves are not compared
    echo "benchmark tests done: $(grep -c 'requests per second' bench.txt)"
    "${cli[@]}" flushall >/dev/null   # its keys are random: start the checks from empty
    for i in 1 100 1000 10000 100000 1048576; do
        head -c "$i" "$IN/xz.bin" >v
        "${cli[@]}" -x set "val:$i" <v >/dev/null
        "${cli[@]}" --raw strlen "val:$i"
        "${cli[@]}" --raw get "val:$i" >got   # the value and a newline
        if cmp -s -n "$i" got v && [ "$(stat -c %s got)" -eq $((i + 1)) ]; then echo "value $i read back"; fi
    done
    for i in $(seq 200); do echo "SET k:$i $((i * i))"; echo "RPUSH l:$((i % 7)) item$i"; done |
        "${cli[@]}" >/dev/null
    "${cli[@]}" --raw mget k:1 k:50 k:200
    "${cli[@]}" --raw lrange l:3 0 5
    "${cli[@]}" --raw dbsize
    "${cli[@]}" flushall >/dev/null
    "${cli[@]}" --raw dbsize
    "${cli[@]}" shutdown nosave >/dev/null 2>&1 || true
    local rc=0
    wait "$pid" || rc=$?
    trap - EXIT
    echo "redis-server status $rc"
    if [ "$rc" -ne 0 ]; then tail -n 20 redis.log >&2; fi
}

# xz round trip of a 50 MB generated file (text and binary parts), two
# threads; and -9 on 3 MB of it (a 674 MiB encoder: large blocks).
case_xz() {
    X xz -T2 -1 --block-size=8MiB -c "$IN/xz.bin" >"$1/big.xz"
    X xz -T2 -dc "$1/big.xz" | cmp - "$IN/xz.bin"
    head -c 3000000 "$IN/xz.bin" >part
    X xz -9 -T1 -c part >"$1/part.xz"
    X xz -dc "$1/part.xz" | cmp - part
    X xz -t "$1/big.xz"
    echo "round trips ok"
}

# ------------------------------------------------------- variant set -------
case_churn_small() { X env PYTHONMALLOC=malloc "$PY" "$INTEG/churn.py" 0.3; }
case_sort_small() {
    X sort "$IN/sort.txt" | sha256sum
    X sort -S 2M --parallel=2 -T . -k2,2 -k3,3g "$IN/sort.txt" | sha256sum
}
case_sqlite_small() {
    cat "$IN/in.sql" "$INTEG/sqlite_queries.sql" | X sqlite3 db
    X sqlite3 db .dump | sha256sum
}

# ----------------------------------------------------------------- run -----
if [ "$MODE" = default ]; then
    if [ -x "$PY" ] && "$PY" -c 'import test.libregrtest, test.test_dict' 2>/dev/null; then
        run_case cpython-tests case_cpython_tests
    else
        wanted cpython-tests && skip cpython-tests "CPython's test package is not installed (Debian: libpython3.11-testsuite): running python-heavy instead"
        if [ -x "$PY" ]; then run_case python-heavy case_python_heavy; fi
    fi
    if wanted git || wanted redis || wanted xz; then
        # 3000 files of 40 lines in 30 directories; 50 MB for xz
        "$PY" - "$IN" <<'EOF'
import os, random, sys
d = sys.argv[1]
rng = random.Random(5)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
for f in range(3000):
    sub = os.path.join(d, "tree", "d%d" % (f % 30))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%d.txt" % f), "w") as out:
        for l in range(40):
            out.write("%d %s %d\n" % (l, " ".join(rng.choices(words, k=8)), rng.randrange(10**6)))
with open(os.path.join(d, "xz.bin"), "wb") as out:
    for block in range(50):   # 1 MB per block: 3/4 text, 1/4 random bytes
        text = "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(12000)).encode()
        out.write(text[:786432])
        out.write(rng.randbytes(262144))
EOF
    fi
    if command -v git >/dev/null; then run_case git case_git
    else wanted git && skip git "git not installed"; fi
    if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null; then
        run_case redis case_redis
    else
        wanted redis && skip redis "redis-server/redis-benchmark/redis-cli not installed (Debian: redis-server, redis-tools)"
    fi
    if command -v xz >/dev/null; then run_case xz case_xz
    else wanted xz && skip xz "xz not installed"; fi
else
    if [ -x "$PY" ]; then run_case python-churn case_churn_small
    else wanted python-churn && skip python-churn "/usr/bin/python3 not installed"; fi
    if wanted sort; then
        awk 'BEGIN { srand(42); abc = "abcdefghijklmnopqrstuvwxyz"
            for (i = 0; i < 300000; i++)
                printf "%d %s%x %.3f\n", int(rand() * 1e9), substr(abc, int(rand() * 26) + 1, int(rand() * 10) + 1),
                       (i * 2654435761) % 4294967296, rand() * 1e6 - 5e5 }' >"$IN/sort.txt"
    fi
    run_case sort case_sort_small
    if command -v sqlite3 >/dev/null; then
        wanted sqlite && awk -v rows=30000 -f "$INTEG/gen_sql.awk" >"$IN/in.sql"
        run_case sqlite case_sqlite_small
    else
        wanted sqlite && skip sqlite "sqlite3 not installed"
    fi
fi

summary
