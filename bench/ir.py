#!/usr/bin/env python3
"""Instructions per malloc+free pair, counted by valgrind's callgrind.

Each allocator runs fixed (64 B, workset 128) and mixed (workset 256) twice,
with N1 and N2 iterations; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and
set-up, leaving the steady-state cost of one loop step: one malloc, one free
and the loop's own few instructions (the same for every allocator).
Callgrind does not replace malloc, so LD_PRELOAD works under it as usual.

  bench/ir.py --peers --hakmem build/default/libhakmem.so \
              [--static-dir build/default/bench]
"""

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
import report
from benchlib import ROOT, STATIC

N1, N2 = 200_000, 400_000
# column -> (program, argv after the program for n iterations)
CASES = {
    "fixed64": ("fixed", lambda n: (n, 64, 128)),
    "mixed256": ("mixed", lambda n: (n, 256)),
}
REFERENCE = "tcmalloc"
TIMEOUT = 120  # seconds for one run under callgrind (they take 1-2 s)
# The CPU fetches code in aligned 64-byte lines: guarded malloc's hit path
# of 65 bytes, its ret the first byte of the next line, ran fixed 16..128 B
# 8% slower than the same instructions in 63 (bench/NOTES.md, "Malloc in one
# line of code").  Instruction counts do not show it; the hit paths' bytes do.
CODE_LINE = 64
HIT_PATH_MAX = 512  # bytes disassembled from an entry to look for its ret


def total_ir(argv, env, tool_args=(), timeout=TIMEOUT):
    """Total instructions of one run under callgrind, or None if it failed
    or hung. tool_args: more callgrind options (bench/ab.py:
    --toggle-collect=...)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        try:
            p = subprocess.run(
                ["valgrind", "--tool=callgrind", "--trace-children=no",
                 f"--callgrind-out-file={out}", *tool_args, *map(str, argv)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            benchlib.note(f"{' '.join(map(str, argv))} timed out under "
                          f"callgrind (>{timeout}s)")
            return None
        if p.returncode != 0 or not out.exists():
            benchlib.note(f"{' '.join(map(str, argv))} failed under callgrind"
                          f" (exit {p.returncode})")
            return None
        m = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.M)
        return int(m.group(1)) if m else None


def ir_per_pair(argv_for, env, tool_args=(), timeout=TIMEOUT):
    """(Ir(N2) - Ir(N1)) / (N2 - N1) for argv_for(n), or None."""
    low = total_ir(argv_for(N1), env, tool_args, timeout)
    if low is None:
        return None
    high = total_ir(argv_for(N2), env, tool_args, timeout)
    if high is None:
        return None
    return (high - low) / (N2 - N1)


def first_ret_end(disassembly):
    """The address just past the first ret in `objdump -d` output (raw bytes
    shown), or None.  hakmem's fronts lay the hit out first (HAK_LIKELY), so
    from the entry to that ret is the hit path."""
    for line in disassembly.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t(.*)$", line)
        if m and re.match(r"(?:(?:rep[a-z]*|bnd|notrack) )?ret", m.group(3).strip()):
            return int(m.group(1), 16) + len(m.group(2).split())
    return None


def code_lines(start, size):
    """How many aligned CODE_LINE-byte lines [start, start + size) touches."""
    return (start + size - 1) // CODE_LINE - start // CODE_LINE + 1


def hit_path(lib, symbol):
    """(bytes, code lines) of the exported `symbol`'s hit path in shared
    library `lib`, or None when nm or objdump cannot say."""
    try:
        syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)],
                              capture_output=True, text=True, check=True).stdout
        start = next(int(f[0], 16) for f in map(str.split, syms.splitlines())
                     if len(f) == 3 and f[2] == symbol)
        dump = subprocess.run(["objdump", "-d", f"--start-address={start:#x}",
                               f"--stop-address={start + HIT_PATH_MAX:#x}", str(lib)],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return None
    end = first_ret_end(dump)
    return None if end is None else (end - start, code_lines(start, end - start))


def hit_path_rows(allocs):
    """The hit-path table's rows: one per allocator that is a hakmem build."""
    rows = []
    for a in allocs:
        if a.preload and Path(a.preload).name == "libhakmem.so":
            cells = [a.name]
            for sym in ("malloc", "free"):
                hp = hit_path(a.preload, sym)
                cells.append("-" if hp is None else
                             f"{hp[0]} B, {hp[1]} line{'s' if hp[1] > 1 else ''}")
            rows.append(cells)
    return rows


def jobs(allocs, args):
    """(row name, column, argv_for(n), env) for every measurement."""
    for a in allocs:
        for case, (prog, case_args) in CASES.items():
            binary = args.bin_dir / prog
            yield (a.name, case,
                   lambda n, b=binary, f=case_args: (b, *f(n)), a.env())
    static = args.static_dir / "fixed_static_64" if args.static_dir else None
    if static and static.is_file():
        yield (STATIC, "fixed64", lambda n: (static, n, 128),
               benchlib.Alloc(STATIC, None).env())
    elif static:
        benchlib.note(f"{static} not found: no {STATIC} row")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_alloc_args(ap)
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--static-dir", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    allocs, _ = benchlib.allocs_from_args(args)
    benchlib.make_out_dir(args.out)
    if shutil.which("valgrind") is None:
        benchlib.die("valgrind not found (apt-get install valgrind)")
    for prog, _ in CASES.values():
        if not (args.bin_dir / prog).is_file():
            benchlib.die(f"{args.bin_dir / prog} not found (make bench-ir)")

    todo = list(jobs(allocs, args))
    print(f"bench-ir: {2 * len(todo)} callgrind runs "
          f"(N1={N1}, N2={N2})...", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        values = list(pool.map(lambda j: ir_per_pair(j[2], j[3]), todo))
    table = {}
    for (name, case, _, _), v in zip(todo, values):
        table.setdefault(name, {})[case] = v

    ref = table.get(REFERENCE, {})
    header = (["allocator"] + [f"{c} Ir/pair" for c in CASES]
              + [f"{c} vs {REFERENCE}" for c in CASES])
    lines = []
    for name, row in table.items():
        cells = [name]
        cells += ["-" if row.get(c) is None else f"{row[c]:.1f}" for c in CASES]
        cells += [f"{row[c] / ref[c]:.2f}" if row.get(c) and ref.get(c) else "-"
                  for c in CASES]
        lines.append(cells)
    report.table(f"Instructions per malloc+free pair (callgrind, "
                 f"(Ir({N2}) - Ir({N1})) / {N2 - N1}, loop included)", header, lines)
    hit_rows = hit_path_rows(allocs)
    if hit_rows:
        report.table(f"Hit paths in code (objdump: from the entry to the first ret; "
                     f"lines of {CODE_LINE} bytes)",
                     ["allocator", "malloc hit", "free hit"], hit_rows)

    with open(args.out / "ir.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["alloc", "workload", "ir_per_pair", "n1", "n2"])
        for name, row in table.items():
            for case, v in row.items():
                out.writerow([name, case, "" if v is None else f"{v:.2f}",
                              N1, N2])
    return 1 if any(v is None for v in values) else 0


if __name__ == "__main__":
    sys.exit(main())
