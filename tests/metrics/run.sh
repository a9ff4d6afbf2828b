#!/usr/bin/env bash
# Metrics: a metrics build counts exactly, reports a table and CSV at exit;
# a build without metrics has no counter in it at all.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
check() { if eval "$2"; then echo "PASS $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

make -s VARIANT=metrics >/dev/null
make -s >/dev/null
gcc -O2 -fno-builtin-malloc -fno-builtin-free -pthread -o "$work/workload" tests/metrics/workload.c
lib=$PWD/build/metrics/libhakmem.so

# class 3 (64 B, a list of 256, refill 64): main refills once and then hits the
# list 999 times; the thread refills twice for its 100 blocks (64 + 64).  Every
# free fits the list.  Two heaps map one span each.
HAKMEM_STATS="$work/stats.csv" LD_PRELOAD=$lib "$work/workload"
check "csv: exact counts of the 64 B class" \
    '[ "$(grep "^3,64," "$work/stats.csv")" = "3,64,sll;slab,1097,0,3,1100,0,0,3,192,0,0,0,2,0" ]'
check "csv: header and one row per class" \
    '[ "$(head -1 "$work/stats.csv" | cut -d, -f1-6)" = "class,size,tiers,alloc_tier0,alloc_tier1,alloc_slow" ] &&
     [ "$(grep -c "^[0-9]" "$work/stats.csv")" = "$(grep -c "^ \*  *[0-9]" generated/metrics/hak_tables.c)" ]'
check "csv: superslabs row" 'grep -q "^superslabs,0,,0,0,0,0,0,0,0,0,0,0,0,1,0$" "$work/stats.csv"'

# The same on the ring spec (ring 256, refill 64), and with the list tried
# before the ring: the table front serves either and counts the same hits,
# refills and blocks at tier 0.
# NAME BASE BODY: a metrics variant of this test's own, on spec/variants/BASE, built.
metrics_variant() {
    printf 'base: %s/spec/variants/%s\nname: %s\n%s\n' "$PWD" "$2" "$1" "$3" >"$work/$1.yaml"
    make -s VARIANT="$1" SPEC="$work/$1.yaml" >/dev/null
}
metrics_variant metricsring ring.yaml 'options: { metrics: true }'
metrics_variant metricslist metrics.yaml $'tiny:\n  all: { tiers: [sll, ring, slab] }'
for v in "metricsring|ring|ring;slab" "metricslist|list first|sll;ring;slab"; do
    IFS='|' read -r name what tiers <<<"$v"
    HAKMEM_STATS="$work/$name.csv" LD_PRELOAD=$PWD/build/$name/libhakmem.so "$work/workload"
    check "csv: exact counts of the 64 B class, ${what}" \
        '[ "$(grep "^3,64," "$work/$name.csv")" = "3,64,$tiers,1097,0,3,1100,0,0,3,192,0,0,0,2,0" ]'
done

table=$(HAKMEM_STATS=1 LD_PRELOAD=$lib "$work/workload" 2>&1)
# (no grep -q or head in a pipeline: under pipefail the writer's SIGPIPE when
# they stop reading early fails the check, or with `!` passes it wrongly)
check "table on stderr" \
    'echo "$table" | grep -E "^ +3 +64 sll,slab +1097 +0 +3 +1100 +0 +0 +3 +0 +0 +2 +0$" >/dev/null &&
     [[ "${table%%$'"'"'\n'"'"'*}" == "hakmem stats: spec metrics hash "* ]]'
# The profile counts a large request even when it is the thread's first call
# (800000 B: the bucket of sizes up to 2^20 - 1).
gcc -O2 -fno-builtin-malloc -fno-builtin-free -o "$work/first_large" tests/metrics/first_large.c
HAKMEM_PROFILE="$work/profile.json" LD_PRELOAD=$lib "$work/first_large"
check "profile: a first call that is large" \
    'grep -q "\"large_histogram\": \[\[1048575, 1\]\]" "$work/profile.json"'
# A request of 64 bits (SIZE_MAX) counts in the last bucket, of every size
# from 2^62 up, and in no class's bursts (its index was one past the array).
gcc -O2 -fno-builtin-malloc -fno-builtin-free -o "$work/impossible_large" tests/metrics/impossible_large.c
HAKMEM_PROFILE="$work/huge.json" LD_PRELOAD=$lib "$work/impossible_large"
check "profile: an impossible large request" \
    'grep -q "\"large_histogram\": \[\[18446744073709551615, 1\]\]" "$work/huge.json" &&
     ! grep -q "\"alloc_bursts\": \[\[" "$work/huge.json"'
# Across fork: the child's thread reuses the TLS of a parent thread that was on
# the live-thread list; the child's report must end and count the thread's 40
# blocks of 5000 B (class 72, 5120 B, a list of 64, refill 16: a first refill
# of one block, a page's worth, then 3 of 16; 36 hits; 49 blocks, 12 a span:
# 5 spans).
gcc -O2 -fno-builtin-malloc -fno-builtin-free -pthread -o "$work/fork_threads" tests/metrics/fork_threads.c
LD_PRELOAD=$lib "$work/fork_threads" "$work/fork.csv" && fork_rc=0 || fork_rc=$?
check "fork: the child's report ends and counts its thread (exit $fork_rc; 3 = hung)" \
    '[ "$fork_rc" = 0 ] && [ "$(grep "^72,5120," "$work/fork.csv")" = "72,5120,sll;slab,36,0,4,40,0,0,4,49,0,0,0,5,0" ]'
# Cross-thread frees count as remote frees whether a flush put them in a
# transfer batch or in their spans' remote bitmaps (notransfer): 449 of them,
# 4 flushes of 64 blocks (tests/metrics/cross_thread.c).
gcc -O2 -fno-builtin-malloc -fno-builtin-free -pthread -o "$work/cross_thread" tests/metrics/cross_thread.c
metrics_variant metricsnotransfer metrics.yaml $'tiny: { all: { transfer: 0 } }\nmid: { transfer: 0 }'
for v in metrics metricsnotransfer metricsring; do
    HAKMEM_STATS="$work/cross-$v.csv" LD_PRELOAD=$PWD/build/$v/libhakmem.so "$work/cross_thread"
    check "csv: blocks freed by another thread are remote frees ($v)" \
        '[ "$(grep "^3,64," "$work/cross-$v.csv" | cut -d, -f12-14)" = "4,256,449" ]'
done
quiet=$(LD_PRELOAD=$lib "$work/workload" 2>&1)
check "nothing without HAKMEM_STATS" '[ -z "$quiet" ]'

# Profile-guided tuning end to end, as `make tune-demo` runs it: appmix is
# deterministic, so its profile and the overlay tuned from it are the same
# bytes every run, and they are spec/variants/appmix.yaml but for the line
# naming the base (relative to where the overlay is written).  A change to
# the runtime, the tuner or the default that moves them fails here until
# `make tune-demo` writes the variant anew.
make -s tune-profile TUNE_PROFILE="$work/tune/appmix.json" >/dev/null
python=${PYTHON:-python3}  # the Makefile's: one with Jinja2 and PyYAML
"$python" gen/hakgen tune "$work/tune/appmix.json" -o "$work/tune/appmix.yaml" --base spec/classes.yaml >/dev/null
check "tune: the profile of appmix tunes to the committed spec/variants/appmix.yaml" \
    'diff <(grep -v "^base: " "$work/tune/appmix.yaml") <(grep -v "^base: " spec/variants/appmix.yaml) &&
     grep -qx "base: ../classes.yaml" spec/variants/appmix.yaml'

# Without metrics: no stats symbol (but glibc's malloc_stats, which every build
# exports), and a smaller per-thread block (its size is that of the shared
# empty block every thread starts with, in its slot: runtime/thread.c).
block_size() { echo $(( 16#$(nm -S "$1" | awk '$4 == "new_slot" { print $2 }') )); }
# 13 counters of 8 bytes per class at least
nclasses=$(awk '$2 == "HAK_NUM_CLASSES" { print $3 + 0 }' generated/metrics/hak_spec.h)
check "no counters without metrics (symbols)" \
    '! nm build/default/libhakmem.so | grep -i stats | grep -vw malloc_stats >/dev/null &&
     nm "$lib" | grep hak_stats_thread_exit >/dev/null'
check "no counters without metrics (thread block size)" \
    '[ $(( $(block_size "$lib") - $(block_size build/default/libhakmem.so) )) -ge $(( nclasses * 13 * 8 )) ]'

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
