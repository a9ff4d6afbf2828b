#!/usr/bin/env bash
# Integration tests: real programs run twice, without and with LD_PRELOAD=LIB;
# their stdout, stderr, exit status and the files they write must be equal
# byte for byte.
#
# Usage: tests/integration/run.sh [LIB] [CASE...]
#   LIB   the malloc library to preload (default: $HAKMEM_LIB).  An empty
#         string runs both sides without preload: a sanity run of the harness.
#   CASE  run only the named cases (default: all); see README.md.
# Prints `PASS name`, `FAIL name (reason)` or `SKIP name (reason)` per case
# and at the end `N passed, M failed` (`, K skipped` appended when K > 0).
# Exits 1 if any case failed, 2 on a usage error.
# Per-case timings go to stderr as `# name: base 1.2s, preload 1.3s`.
# KEEP=1 keeps the temp dir (its path is printed on stderr).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ $# -ge 1 ]; then LIB=$1; shift; else LIB=${HAKMEM_LIB:-}; fi
if [ -n "$LIB" ]; then
    if [ ! -f "$LIB" ]; then
        echo "run.sh: library not found: $LIB" >&2
        exit 2
    fi
    LIB=$(readlink -f "$LIB")   # the cases cd around: LD_PRELOAD needs an absolute path
fi
ONLY=("$@")

T=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-integ.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T" >&2; else rm -rf "$T"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Deterministic environment and the run-both-sides helpers: tests/lib.
TIMEOUT=${TIMEOUT:-120}
# shellcheck source=../lib/preload_harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/preload_harness.sh"

# first_diff A B: a short description of where two files first differ.
first_diff() {
    local out
    out=$(cmp "$1" "$2" 2>&1 | head -n 1) || true
    echo "${out//$T\//}"
}

# first_line_diff A B: the first differing lines of two text files.
first_line_diff() {
    local out
    local d
    d=$(diff -a "$1" "$2" 2>&1) || true
    out="$(grep -a -m 1 '^<' <<<"$d" | cut -c1-160) $(grep -a -m 1 '^>' <<<"$d" | cut -c1-160)" || true
    out=${out# }
    [ -n "$out" ] || out=$(first_diff "$1" "$2")
    echo "${out% }"
}

# run_case NAME FUNC: run FUNC twice (base side, then preload side), each in
# its own work dir, with its output dir as $1.  FUNC must succeed on the base
# side.  Compared: exit status, stdout, stderr, every file FUNC writes under
# its output dir.
run_case() {
    local name=$1 fn=$2 s
    local -A st=() secs=()
    wanted "$name" || return 0
    for s in base pre; do
        side "$T/case/$name/$s" "$fn" "$([ $s = pre ] && echo "$LIB")"
        st[$s]=$RC
        secs[$s]=$SECS
    done
    echo "# $name: base ${secs[base]}s, preload ${secs[pre]}s" >&2
    local b=$T/case/$name/base p=$T/case/$name/pre
    if [ "${st[base]}" -ne 0 ]; then
        fail "$name" "baseline without preload failed: $(describe_status "${st[base]}"): $(tail -c 300 "$b/stderr" | tr '\n' ' ')"
        return 0
    fi
    if [ "${st[pre]}" -ne 0 ]; then
        fail "$name" "preloaded run failed: $(describe_status "${st[pre]}"): $(tail -c 300 "$p/stderr" | tr '\n' ' ')"
        return 0
    fi
    if ! cmp -s "$b/stdout" "$p/stdout"; then
        fail "$name" "stdout differs: $(first_line_diff "$b/stdout" "$p/stdout")"
        return 0
    fi
    if ! cmp -s "$b/stderr" "$p/stderr"; then
        fail "$name" "stderr differs: $(first_line_diff "$b/stderr" "$p/stderr")"
        return 0
    fi
    local f bad=""
    while IFS= read -r -d '' f; do
        f=${f#"$b/out/"}
        if [ ! -f "$p/out/$f" ]; then bad="$f missing in preloaded run"; break; fi
        if ! cmp -s "$b/out/$f" "$p/out/$f"; then bad="$(first_diff "$b/out/$f" "$p/out/$f")"; break; fi
    done < <(find "$b/out" -type f -print0 | sort -z)
    if [ -z "$bad" ]; then
        local nb np
        nb=$(find "$b/out" -type f | wc -l)
        np=$(find "$p/out" -type f | wc -l)
        [ "$nb" -eq "$np" ] || bad="preloaded run wrote $np files, base $nb"
    fi
    if [ -n "$bad" ]; then fail "$name" "$bad"; return 0; fi
    pass "$name"
}

# ---------------------------------------------------------------- inputs ---
# Generated once, without preload, and shared read-only by both sides.
IN=$T/in
mkdir -p "$IN"
gen_inputs() {
    local py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    # 2M lines: number, short word, hex, signed decimal
    awk 'BEGIN { srand(42); abc = "abcdefghijklmnopqrstuvwxyz"
        for (i = 0; i < 2000000; i++)
            printf "%d %s%x %.3f\n", int(rand() * 1e9), substr(abc, int(rand() * 26) + 1, int(rand() * 10) + 1),
                   (i * 2654435761) % 4294967296, rand() * 1e6 - 5e5 }' >"$IN/sort.txt"
    head -c 6000000 "$IN/sort.txt" >"$IN/compress.txt"
    "$py" "$HERE/gen_c.py" "${NFUNCS:-1500}" >"$IN/prog.c"
    awk -v rows=200000 -f "$HERE/gen_sql.awk" >"$IN/in.sql"
}
gen_inputs

# ----------------------------------------------------------------- cases ---

# The preloaded library really is mapped, and malloc/free of both a program
# and libc itself bind to it (the dynamic linker's own account, with every
# symbol bound at start-up).
case_preload_active() {
    local sym from
    if [ -z "$CUR" ]; then
        echo "mapped in python: True"
        for from in sort libc.so.6; do
            for sym in malloc free calloc realloc; do echo "$from: $sym -> preload"; done
        done
        return 0
    fi
    X /usr/bin/python3 -c '
import sys
lib = sys.argv[1]
maps = [l.split() for l in open("/proc/self/maps")]
print("mapped in python:", any(len(f) >= 6 and f[5] == lib for f in maps))' "$CUR"
    echo x | X env LD_BIND_NOW=1 LD_DEBUG=bindings sort 2>bindings.txt >/dev/null
    for from in sort libc.so.6; do
        for sym in malloc free calloc realloc; do
            if grep -E "binding file (/[^ ]*/)?$from \[0\] to $CUR \[0\]: normal symbol .$sym'" bindings.txt >/dev/null; then
                echo "$from: $sym -> preload"
            else
                echo "$from: $sym -> $(grep -E "binding file (/[^ ]*/)?$from \[0\] to .*symbol .$sym'" bindings.txt | head -n 1 | sed 's/.* to \([^ ]*\) .*/\1/')"
            fi
        done
    done
}

# $1 = output dir, $2 = interpreter, $3 = PYTHONMALLOC value ("" = default)
python_churn() {
    local py=$2
    if [ -n "${3:-}" ]; then
        X env PYTHONMALLOC="$3" "$py" "$HERE/churn.py"
    else
        X "$py" "$HERE/churn.py"
    fi
}
case_python_churn() { python_churn "$1" /usr/bin/python3 ""; }
case_python_churn_malloc() { python_churn "$1" /usr/bin/python3 malloc; }
case_python_default() { python_churn "$1" "$DEFAULT_PY" ""; }

case_sort() {
    X sort "$IN/sort.txt" | sha256sum
    X sort -n "$IN/sort.txt" | sha256sum
    # small buffer: temporary files and a multi-way merge, two threads
    X sort -S 8M --parallel=2 -T . -k2,2 -k3,3g "$IN/sort.txt" | sha256sum
}

case_gcc() {
    cp "$IN/prog.c" prog.c
    X gcc -O2 -Wall -c prog.c -o "$1/prog.o"
    gcc "$1/prog.o" -o prog
    X ./prog
    (cd "$1" && objdump -d prog.o | sha256sum)
}

case_sqlite() {
    cat "$IN/in.sql" "$HERE/sqlite_queries.sql" | X sqlite3 db
    # the database file, dumped back to SQL
    X sqlite3 db .dump | sha256sum
}

case_compress() {
    X xz -T2 -2 --block-size=1MiB -c "$IN/compress.txt" >"$1/c.xz"
    X xz -T2 -dc "$1/c.xz" | cmp - "$IN/compress.txt"
    X gzip -6 -c "$IN/compress.txt" >"$1/c.gz"
    X gzip -dc "$1/c.gz" | cmp - "$IN/compress.txt"
    X xz -t "$1/c.xz"
    echo "round trips ok"
}

case_perl() { X perl "$HERE/churn.pl"; }

case_git() {
    git_identity
    X git init -q -b main repo
    cd repo
    local c
    for c in 1 2 3 4; do
        # 100 new files per commit in 10 dirs, and edits to earlier ones
        awk -v c=$c 'BEGIN { srand(c)
            for (f = 0; f < 100; f++) {
                d = "d" (f % 10); system("mkdir -p " d)
                fn = d "/f" f "_" c ".txt"
                for (l = 0; l < 150; l++) printf "%d %s %d\n", l, fn, int(rand() * 1e6) > fn
                close(fn)
                if (c > 1) { old = d "/f" f "_" (c - 1) ".txt"; printf "edit %d\n", c >> old; close(old) }
            } }'
        X git add -A
        X git commit -q -m "commit $c"
    done
    X git repack -q -a -d -f --window=20
    local fsck=0
    X git fsck --strict --no-progress || fsck=$?
    echo "fsck status $fsck"
    X git log --format=%T
    X git log --format=%H -1
    X git diff --stat HEAD~3 HEAD | tail -n 1
    X git archive --format=tar HEAD | sha256sum
}

# ----------------------------------------------------------------- run -----
if [ -n "$LIB" ] && [ -x /usr/bin/python3 ]; then
    run_case preload-active case_preload_active
else
    if [ -n "$LIB" ]; then
        fail preload-active "/usr/bin/python3 is needed to check the preload"
    else
        wanted preload-active && skip preload-active "no library given: sanity run without preload"
    fi
fi

if [ -x /usr/bin/python3 ]; then
    run_case python-churn case_python_churn
    run_case python-churn-malloc case_python_churn_malloc
else
    wanted python-churn && skip python-churn "/usr/bin/python3 not installed"
    wanted python-churn-malloc && skip python-churn-malloc "/usr/bin/python3 not installed"
fi
DEFAULT_PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
if [ -n "$DEFAULT_PY" ] && [ "$(readlink -f "$DEFAULT_PY")" != "$(readlink -f /usr/bin/python3)" ]; then
    run_case python-default case_python_default
else
    wanted python-default && skip python-default "default python3 is /usr/bin/python3"
fi

run_case sort case_sort
run_case gcc case_gcc

if command -v sqlite3 >/dev/null; then
    run_case sqlite case_sqlite
else
    wanted sqlite && skip sqlite "sqlite3 not installed (make deps installs it)"
fi

if command -v xz >/dev/null && command -v gzip >/dev/null; then
    run_case compress case_compress
else
    wanted compress && skip compress "xz or gzip not installed"
fi

if command -v perl >/dev/null; then
    run_case perl case_perl
else
    wanted perl && skip perl "perl not installed"
fi

if command -v git >/dev/null; then
    run_case git case_git
else
    wanted git && skip git "git not installed"
fi

summary
