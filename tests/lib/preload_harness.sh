# tests/lib/preload_harness.sh: sourced by the scripts that run real programs
# twice, without and with LD_PRELOAD, and compare (tests/integration/run.sh,
# tests/reliability/programs.sh).  The caller sets T (its temp dir), ONLY
# (the cases asked for, empty = all) and TIMEOUT, then sources this file.

export LC_ALL=C TZ=UTC
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
export HOME="$T/home"
mkdir -p "$HOME"
unset LD_PRELOAD MALLOC_CONF MIMALLOC_OPTIONS GLIBC_TUNABLES PYTHONMALLOC 2>/dev/null || true

CUR="" # library preloaded for the side being run ("" = none)

# X CMD ARGS...: run one program of a case, under a timeout, preloaded with
# $CUR on the preload side.  Only the program itself gets LD_PRELOAD (not the
# shell running the case, not timeout).
X() {
    if [ -n "$CUR" ]; then
        timeout -k 5 "$TIMEOUT" env LD_PRELOAD="$CUR" "$@"
    else
        timeout -k 5 "$TIMEOUT" "$@"
    fi
}

PASSED=0 FAILED=0 SKIPPED=0
# A fixed git identity and dates: commits (and their hashes) the same on every run.
git_identity() {
    export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org
    export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org
    export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
}

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1 ($2)"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1 ($2)"; SKIPPED=$((SKIPPED + 1)); }

# wanted CASE: true when CASE was asked for (or nothing was).
wanted() {
    [ ${#ONLY[@]} -eq 0 ] && return 0
    local c
    for c in "${ONLY[@]}"; do [ "$c" = "$1" ] && return 0; done
    return 1
}

describe_status() {
    local rc=$1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "timeout"
    elif [ "$rc" -gt 128 ]; then echo "status $rc, $(kill -l $((rc - 128)) 2>/dev/null || echo signal)"
    else echo "status $rc"; fi
}

# side DIR FUNC LIB: run FUNC once in DIR/work with output dir DIR/out,
# preloaded with LIB ("" = none); sets RC and SECS.
side() {
    local d=$1 fn=$2 t0 t1
    mkdir -p "$d/out" "$d/work"
    CUR=$3
    t0=$(date +%s.%N)
    set +e
    (cd "$d/work" && set -euo pipefail && "$fn" "$d/out") >"$d/stdout" 2>"$d/stderr" </dev/null
    RC=$?
    set -e
    t1=$(date +%s.%N)
    CUR=""
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    rm -rf "$d/work"
}

# The closing line (`N passed, M failed[, K skipped]`); status 0 when nothing failed.
summary() {
    if [ "$SKIPPED" -gt 0 ]; then
        echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    else
        echo "$PASSED passed, $FAILED failed"
    fi
    [ "$FAILED" -eq 0 ]
}
