#!/usr/bin/env python3
"""Generate a deterministic C11 program with many varied functions.

Usage: gen_c.py NFUNCS > prog.c

The program calls every function, folds the results into a checksum and
prints it along with a few intermediate values.  It exercises gcc's
optimizer (loops, switches, inlining candidates, structs, string literals)
so that compiling it at -O2 allocates a lot of memory in cc1.
"""
import random
import sys


def main():
    nfuncs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rng = random.Random(7)
    out = []
    w = out.append
    w("#include <stdio.h>\n#include <stdint.h>\n#include <string.h>\n")
    w("struct pt { int32_t x, y; uint8_t tag[12]; };\n")
    w("static uint32_t mix(uint32_t a, uint32_t b) { a ^= b + 0x9e3779b9u + (a << 6) + (a >> 2); return a; }\n")
    ops = ["+", "-", "^", "|", "&", "*"]
    for i in range(nfuncs):
        kind = i % 5
        w(f"__attribute__((noinline)) uint32_t f{i}(uint32_t x) {{\n")
        if kind == 0:
            n = rng.randint(3, 40)
            w(f"  uint32_t a[{n}];\n")
            w(f"  for (int i = 0; i < {n}; i++) a[i] = x {rng.choice(ops)} (uint32_t)(i * {rng.randint(1, 999)});\n")
            w(f"  uint32_t s = {rng.randint(0, 1 << 30)}u;\n")
            w(f"  for (int i = 0; i < {n}; i++) s = mix(s, a[i]);\n  return s;\n")
        elif kind == 1:
            w("  switch (x % 13u) {\n")
            for c in range(13):
                w(f"  case {c}: x = x {rng.choice(ops)} {rng.randint(1, 1 << 20)}u; break;\n")
            w("  }\n")
            w(f"  return mix(x, {rng.randint(0, 1 << 31)}u);\n")
        elif kind == 2:
            s = "".join(chr(rng.randint(97, 122)) for _ in range(rng.randint(5, 60)))
            w(f'  static const char s[] = "{s}";\n')
            w("  uint32_t h = x;\n  for (size_t i = 0; i < sizeof s - 1; i++) h = h * 31u + (uint8_t)s[i];\n")
            w("  return h;\n")
        elif kind == 3:
            w("  struct pt p[4];\n  memset(p, 0, sizeof p);\n")
            w(f"  for (int i = 0; i < 4; i++) {{ p[i].x = (int32_t)(x >> i) - {rng.randint(0, 99)}; "
              f"p[i].y = p[i].x * {rng.randint(2, 9)}; p[i].tag[i] = (uint8_t)x; }}\n")
            w("  uint32_t s = 0;\n  for (int i = 0; i < 4; i++) s = mix(s, (uint32_t)(p[i].x ^ p[i].y) + p[i].tag[i]);\n")
            w("  return s;\n")
        else:
            # call a few earlier functions: a call graph for the inliner
            calls = [rng.randrange(i) for _ in range(min(i, rng.randint(1, 4)))]
            w("  uint32_t s = x;\n")
            for c in calls:
                w(f"  s = mix(s, f{c}(s {rng.choice(ops)} {rng.randint(1, 1000)}u));\n")
            w(f"  if (s & {1 << rng.randint(0, 15)}u) s = ~s; else s += {rng.randint(0, 1 << 16)}u;\n")
            w("  return s;\n")
        w("}\n")
    w("typedef uint32_t (*fn_t)(uint32_t);\n")
    w("static const fn_t table[] = {\n")
    for i in range(nfuncs):
        w(f"  f{i},\n")
    w("};\n")
    w("int main(void) {\n  uint32_t s = 1;\n")
    w("  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {\n")
    w("    s = mix(s, table[i](s + (uint32_t)i));\n")
    w(f'    if (i % {max(1, nfuncs // 8)} == 0) printf("%zu %08x\\n", i, s);\n')
    w("  }\n")
    w('  printf("checksum %08x\\n", s);\n  return 0;\n}\n')
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
