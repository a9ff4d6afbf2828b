#!/usr/bin/env bash
# The shipped variants and `make ab`:
#   - every spec/variants/*.yaml validates, builds (make VARIANT=NAME) and
#     passes the runtime's Check suite (make VARIANT=NAME test-unit);
#   - make ab of the default against an identical copy (a spec outside
#     spec/variants, B_SPEC=) under METRIC=ir: ratio exactly 1.000 and
#     "no difference detected" on every fixed size;
#   - a one-field edit of that copy (free_check: trusted) is picked up by the
#     next make ab (rebuild time printed) and changes the instruction count.
# Works in the checkout (build/NAME/ as `make VARIANT=NAME` leaves it); the
# copy's generated/ and build/ directories are removed at the end.
# Prints PASS/FAIL lines and "N passed, M failed"; exit 1 when one failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
JOBS=${JOBS:-2}
COPY=zz_abcopy   # a name no shipped variant uses
tmp=$(mktemp -d)
cleanup() {
    rm -rf "$tmp" "generated/$COPY" "build/$COPY"
}
trap cleanup EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1 ($2)"; fail=$((fail + 1)); }
# last line of a log that says something (for FAIL reasons)
why() { grep -E 'rror|FAIL|:[EF]:|Failures: [1-9]' "$1" | tail -n 2 | tr '\n' ' ' | cut -c1-300; }

make -s deps >/dev/null 2>&1 || true
PYTHON=$(for p in python3 /usr/bin/python3; do
    $p -c 'import jinja2, yaml' 2>/dev/null && { echo $p; break; }; done)
PYTHON=${PYTHON:-python3}

# ---- every shipped variant
for spec in spec/variants/*.yaml; do
    name=$(basename "$spec" .yaml)
    log=$tmp/$name.log
    if ! out=$($PYTHON gen/hakgen validate "$spec" 2>&1); then
        bad "variant $name: validate" "$out"
        continue
    fi
    ok "variant $name: validate"
    if ! make -j"$JOBS" --no-print-directory VARIANT="$name" >"$log" 2>&1; then
        bad "variant $name: build" "$(why "$log")"
        bad "variant $name: unit" "not built"
        continue
    fi
    ok "variant $name: build"
    if make -j"$JOBS" --no-print-directory VARIANT="$name" test-unit >"$log" 2>&1; then
        # the Check suite's count, then tests/hooks' (make test-unit runs both)
        ok "variant $name: unit (Checks: $(grep -Eo 'Checks: [0-9]+' "$log" | grep -Eo '[0-9]+' | paste -sd+))"
    else
        bad "variant $name: unit" "$(why "$log")"
    fi
done

# ---- make ab: the default against an identical copy, instruction counts
copy=$tmp/$COPY.yaml
printf '# an identical copy of the default (tests/variants/run.sh)\nbase: %s\n' \
    "$repo/spec/classes.yaml" >"$copy"
ab() { # ab LOG [make args...]
    local log=$1; shift
    make -j"$JOBS" --no-print-directory ab A=default B=$COPY B_SPEC="$copy" \
        METRIC=ir AB_OUT="$tmp/ab" "$@" >"$log" 2>&1
}
csv=$tmp/ab/default-vs-$COPY.csv
# field N of every data row of the csv, one per line
col() { tail -n +2 "$csv" | cut -d, -f"$1"; }

if ab "$tmp/aa.log" BENCH=fixed; then
    rows=$(tail -n +2 "$csv" | wc -l)
    ratios=$(col 8 | sort -u | tr '\n' ' ')
    verdicts=$(col 11 | sort -u | tr '\n' ' ')
    shown=$(grep -cE '^fixed .* 1\.000 .*no difference detected$' "$tmp/aa.log")
    if [ "$rows" = 7 ] && [ "$ratios" = "1.000000 " ] &&
        [ "$verdicts" = "no difference detected " ] && [ "$shown" = 7 ]; then
        ok "make ab A/A (METRIC=ir BENCH=fixed): 7 sizes, ratio 1.000, no difference detected"
    else
        bad "make ab A/A (METRIC=ir BENCH=fixed)" \
            "rows $rows, ratios $ratios, verdicts $verdicts, table lines $shown"
    fi
else
    bad "make ab A/A (METRIC=ir BENCH=fixed)" "$(tail -n 3 "$tmp/aa.log" | tr '\n' ' ')"
fi

# ---- a one-field edit of B's spec: rebuilt by the next make ab, Ir differs
echo 'options: { free_check: trusted }' >>"$copy"
t0=$(date +%s.%N)
make -j"$JOBS" --no-print-directory VARIANT=$COPY SPEC="$copy" >"$tmp/rebuild.log" 2>&1
t1=$(date +%s.%N)
secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
if ab "$tmp/edit.log" BENCH=fixed64; then
    ratio=$(col 8) verdict=$(col 11)
    if grep -q '"free_check": "trusted"' "generated/$COPY/spec.json" &&
        [ -n "$ratio" ] && [ "$ratio" != 1.000000 ] &&
        [ "$verdict" = "B fewer instructions" ]; then
        ok "one-field edit (free_check: trusted) rebuilt in $secs s, Ir ratio $ratio, $verdict"
    else
        bad "one-field edit (free_check: trusted)" "ratio '$ratio', verdict '$verdict'"
    fi
else
    bad "one-field edit (free_check: trusted)" "$(tail -n 3 "$tmp/edit.log" | tr '\n' ' ')"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
