#!/usr/bin/env bash
# The build itself: a spec or template edit rebuilds exactly what depends on
# it; make install gives a library usable through pkg-config, dynamically and
# statically (inline front). Works on a copy of the tracked tree.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

cd "$repo"
git ls-files -z | xargs -0 cp --parents -t "$work"
cd "$work"
make -s >/dev/null 2>&1 || { echo "FAIL build: make failed in a copy"; echo "0 passed, 1 failed"; exit 1; }

# Which objects does the next make rebuild?  (-d is too noisy; compare mtimes.)
rebuilt() {
    local stamp=$work/.stamp
    touch "$stamp"
    sleep 1
    make -s >/dev/null 2>&1
    find build/default/obj -name '*.o' -newer "$stamp" -printf '%f\n' | sort | tr '\n' ' '
}

got=$(rebuilt)
[ -z "$got" ] && ok "nothing to do twice" || bad "nothing to do twice" "rebuilt: $got"

# A template edit that changes only hak_tables.c rebuilds only hak_tables.o.
sed -i '1a {# a comment that renders to nothing #}' templates/hak_tables.c.j2
echo '/* edited */' >>templates/hak_tables.c.j2
got=$(rebuilt)
[ "$got" = "hak_tables.o " ] && ok "template edit rebuilds its output only" \
    || bad "template edit rebuilds its output only" "rebuilt: ${got:-nothing}"

# Editing another variant's spec rebuilds nothing of the default.
mkdir -p spec/variants
printf 'base: ../classes.yaml\noptions: { decay_ms: 5 }\n' >spec/variants/zz_test.yaml
got=$(rebuilt)
[ -z "$got" ] && ok "other variant's spec rebuilds nothing" \
    || bad "other variant's spec rebuilds nothing" "rebuilt: $got"

# A spec edit changes the generated header: everything including it is rebuilt,
# and the library reports the new hash.
old_hash=$(sed -n 's/^#define HAK_SPEC_HASH "\(.*\)"/\1/p' generated/default/hak_spec.h)
sed -i 's/^  decay_ms: 1000/  decay_ms: 2000/' spec/classes.yaml
got=$(rebuilt)
new_hash=$(sed -n 's/^#define HAK_SPEC_HASH "\(.*\)"/\1/p' generated/default/hak_spec.h)
shown=$(HAKMEM_SHOW_SPEC=1 LD_PRELOAD=$work/build/default/libhakmem.so /bin/true 2>&1)
n_objs=$(ls build/default/obj/*.o | wc -l)
if [ "$(echo "$got" | wc -w)" = "$n_objs" ] && [ "$old_hash" != "$new_hash" ] &&
    [ "$shown" = "hakmem: spec default hash $new_hash free_check guarded" ]; then
    ok "spec edit rebuilds all and changes the hash"
else
    bad "spec edit rebuilds all and changes the hash" "rebuilt: $got; hash $old_hash -> $new_hash; shown: $shown"
fi

# A variant builds into its own directories.
make -s VARIANT=zz_test >/dev/null 2>&1 && [ -f build/zz_test/libhakmem.so ] &&
    grep -q '"decay_ms": 5' generated/zz_test/spec.json && ok "make VARIANT=NAME" \
    || bad "make VARIANT=NAME" "no build/zz_test/libhakmem.so with decay_ms 5"

# make install, then use it through pkg-config, dynamically and statically.
make -s install PREFIX="$work/inst" >/dev/null 2>&1
cat >use.c <<'C'
#include <hakmem.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    char *p = hak_malloc(100);
    strcpy(p, "hello");
    printf("%s %s %zu\n", p, hak_spec_name(), hak_usable_size(p));
    hak_free(p);
    return 0;
}
C
export PKG_CONFIG_PATH=$work/inst/lib/pkgconfig
want="hello default 112"
if gcc use.c -o use_dyn $(pkg-config --cflags --libs hakmem) -Wl,-rpath,"$work/inst/lib" &&
    [ "$(./use_dyn)" = "$want" ]; then ok "install: dynamic link via pkg-config"
else bad "install: dynamic link via pkg-config" "got '$(./use_dyn 2>&1 || true)'"; fi
if gcc -DHAKMEM_STATIC use.c -o use_static $(pkg-config --cflags hakmem) "$work/inst/lib/libhakmem.a" -lpthread &&
    [ "$(./use_static)" = "$want" ]; then ok "install: static link, inline front"
else bad "install: static link, inline front" "got '$(./use_static 2>&1 || true)'"; fi

# Provenance: the library and a static program both carry the spec's name and hash.
ident="hakmem-spec: default $(sed -n 's/^#define HAK_SPEC_HASH "\(.*\)"/\1/p' generated/default/hak_spec.h)"
if [ "$(strings build/default/libhakmem.so | grep -cx "$ident")" = 1 ] &&
    [ "$(strings use_static | grep -cx "$ident")" = 1 ]; then
    ok "provenance: spec name and hash embedded"
else bad "provenance: spec name and hash embedded" "no '$ident' in the library or the static program"; fi

# The bench's do-nothing floors (make bench-floor): each runs the workloads it
# is benchmarked on to glibc's checksum, and a shell (calloc must not recurse).
if make -s bench-bins bench-floor-libs >/dev/null 2>&1; then
    for floor in array list; do
        lib=$work/build/bench/floor-$floor.so
        mism=""
        for run in "fixed 200000 64 128" "mixed 200000 256" "larson 2 50000"; do
            want=$(build/bench/$run | grep -o 'checksum=[0-9]*')
            got=$(LD_PRELOAD=$lib build/bench/$run 2>&1 | grep -o 'checksum=[0-9]*' || true)
            [ -n "$want" ] && [ "$got" = "$want" ] || mism="$mism [$run: ${got:-no result}, glibc $want]"
        done
        [ "$(LD_PRELOAD=$lib bash -c 'echo floor')" = floor ] || mism="$mism [bash -c failed]"
        [ -z "$mism" ] && ok "bench floor-$floor: glibc's checksums" \
            || bad "bench floor-$floor: glibc's checksums" "$mism"
    done
else bad "bench floors" "make bench-bins bench-floor-libs failed"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
