#!/usr/bin/env python3
"""A/B two hakmem variants: paired ratio B/A per workload, with a 95% interval.

`make ab A=ring B=NAME` builds both libraries and calls this script:

  bench/ab.py --a ring=build/ring/libhakmem.so \\
              --b ring64=build/ring64/libhakmem.so \\
              [--bench fixed64,mixed256] [--rounds 7] [--metric ops|ir]

--metric ops (the default) runs every workload under A and B in each round,
interleaved (bench/run.py's rounds: the order alternates A B, B A, ...), and
reports the median ops/s of each and the median of the per-round ratios
B/A, with a 95% percentile-bootstrap interval over the paired rounds
(2000 resamples of the rounds, fixed seed, so the same rows always give the
same interval).  When the interval includes 1 the verdict is "no difference
detected", otherwise "B faster" or "B slower".

--metric ir counts instructions per malloc+free pair under callgrind,
bench/ir.py's way ((Ir(N2) - Ir(N1)) / (N2 - N1)), but counting only inside
malloc and free (--toggle-collect), so neither the loop nor the
time-dependent printf of the RESULT line enters: the count is deterministic.
The ratio is B's count / A's; any difference is real ("B fewer
instructions" / "B more instructions"), equal counts give exactly 1.000 and
"no difference detected".  Only the fixed and mixed workloads.

Results go to OUT/A-vs-B.csv (default OUT: build/ab/); with --metric ops
also OUT/A-vs-B-rounds.csv, one row per run.  Exit status: 0, or 1 when a
run failed, 2 on a usage error.  The verdict never decides it.
"""

import argparse
import csv
import os
import random
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import SimpleNamespace

import benchlib
import ir
import report
import run
from benchlib import ROOT

DEFAULT_BENCH = "fixed64,mixed256"
RESAMPLES = 2000
SEED = 20240605
IR_TOOL_ARGS = ("--toggle-collect=malloc", "--toggle-collect=free")
CSV_COLUMNS = ("workload", "metric", "a", "b", "pairs", "a_value", "b_value",
               "ratio", "ci_low", "ci_high", "verdict", "a_failed", "b_failed")


@dataclass
class Result:
    workload: benchlib.Workload
    a_value: float | None      # median ops/s, or Ir per pair
    b_value: float | None
    ratio: float | None        # B / A: median of per-round ratios, or Ir_B / Ir_A
    interval: tuple | None     # (low, high), 95%
    verdict: str
    pairs: int = 0             # paired rounds (ir: 1)
    a_failed: int = 0
    b_failed: int = 0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, metavar="NAME=PATH",
                    help="variant A (the baseline): its libhakmem.so")
    ap.add_argument("--b", required=True, metavar="NAME=PATH",
                    help="variant B (the one judged): its libhakmem.so")
    ap.add_argument("--bench", metavar="LIST", default=DEFAULT_BENCH,
                    help="comma-separated workloads or programs, as for "
                         f"run.py (default {DEFAULT_BENCH})")
    ap.add_argument("--rounds", type=int, default=7,
                    help="paired rounds (default 7; --metric ir ignores it)")
    ap.add_argument("--metric", choices=("ops", "ir"), default="ops",
                    help="ops: ops/s, interleaved rounds (default); ir: "
                         "instructions per malloc+free pair, callgrind")
    ap.add_argument("--quick", action="store_true",
                    help="run.py's smaller iteration counts (ops only)")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "build" / "bench",
                    help="where the workload binaries are")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "ab",
                    help="directory for A-vs-B.csv (default build/ab)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds before one run counts as failed (under "
                         "callgrind too)")
    args = ap.parse_args()
    if args.rounds < 1:
        benchlib.die("--rounds must be at least 1")
    if not args.timeout > 0:  # nan too
        benchlib.die("--timeout must be a positive number of seconds")
    benchlib.make_out_dir(args.out)
    a, b = benchlib.parse_alloc(args.a), benchlib.parse_alloc(args.b)
    if a.preload is None or b.preload is None:
        benchlib.die("--a and --b want NAME=PATH with a library path")
    args.a_name, args.b_name = a.name, b.name
    # Internal names must differ (an A/A run may give one name twice).
    if a.name == b.name:
        a, b = (benchlib.Alloc(f"{a.name}(A)", a.preload),
                benchlib.Alloc(f"{b.name}(B)", b.preload))
    args.allocs = (a, b)
    return args


# ---------------------------------------------------------------- statistics

def bootstrap_interval(ratios, resamples=RESAMPLES, seed=SEED, level=0.95):
    """Percentile bootstrap of the median over the paired rounds: resample
    the rounds with replacement, take each resample's median; the interval
    is the (1-level)/2 and (1+level)/2 quantiles of those medians."""
    rng = random.Random(seed)
    n = len(ratios)
    meds = sorted(median(rng.choices(ratios, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    lo = meds[int(tail * resamples)]
    hi = meds[min(resamples - 1, int((1 - tail) * resamples) - 1)]
    return lo, hi


def verdict(interval, better_above_one):
    lo, hi = interval
    if lo <= 1 <= hi:
        return "no difference detected"
    return "B faster" if (lo > 1) == better_above_one else "B slower"


# ---------------------------------------------------------------- ops/s

def measure_ops(workloads, args):
    """Interleaved rounds through run.py's machinery."""
    ns = SimpleNamespace(bin_dir=args.bin_dir, quick=args.quick,
                         static_dir=None, rounds=args.rounds,
                         timeout=args.timeout)
    a, b = args.allocs
    runners = run.make_runners(workloads, list(args.allocs), ns)
    rows = run.run_rounds(workloads, runners, ns)
    run.check_checksums(rows)
    results = []
    for w in workloads:
        rate = {a.name: {}, b.name: {}}
        failed = {a.name: 0, b.name: 0}
        for row in rows:
            if row.workload.name != w.name:
                continue
            if row.outcome.status == "ok":
                rate[row.alloc][row.round] = float(row.outcome.result["ops_per_sec"])
            else:
                failed[row.alloc] += 1
        ra, rb = rate[a.name], rate[b.name]
        ratios = [rb[r] / ra[r] for r in sorted(ra) if r in rb and ra[r] > 0]
        res = Result(w, median(ra.values()) if ra else None,
                     median(rb.values()) if rb else None, None, None,
                     "", len(ratios), failed[a.name], failed[b.name])
        if len(ratios) >= 2:
            res.ratio = median(ratios)
            res.interval = bootstrap_interval(ratios)
            res.verdict = verdict(res.interval, better_above_one=True)
        elif ratios:
            res.ratio = ratios[0]
            res.verdict = "one paired round: no interval"
        else:
            res.verdict = "FAILED: no paired round"
        results.append(res)
    return results, rows


# ---------------------------------------------------------------- Ir

def measure_ir(workloads, args):
    if shutil.which("valgrind") is None:
        benchlib.die("valgrind not found (apt-get install valgrind)")
    jobs = []
    for w in workloads:
        binary = args.bin_dir / w.group
        for al in args.allocs:
            jobs.append((w, al, lambda n, b=binary, rest=w.args[1:]: (b, n, *rest)))
    print(f"ab: {2 * len(jobs)} callgrind runs (N1={ir.N1}, N2={ir.N2})...",
          file=sys.stderr)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        values = list(pool.map(
            lambda j: ir.ir_per_pair(j[2], j[1].env(), IR_TOOL_ARGS,
                                     args.timeout), jobs))
    results = []
    for i, w in enumerate(workloads):
        va, vb = values[2 * i], values[2 * i + 1]
        res = Result(w, va, vb, None, None, "", 1, int(va is None),
                     int(vb is None))
        if va is not None and vb is not None and va > 0:
            res.ratio = vb / va
            res.interval = (res.ratio, res.ratio)   # deterministic count
            res.verdict = ("no difference detected" if va == vb else
                           "B fewer instructions" if vb < va else
                           "B more instructions")
        else:
            res.verdict = "FAILED under callgrind"
        results.append(res)
    return results


# ---------------------------------------------------------------- output

def fmt_value(x, metric):
    if x is None:
        return "FAILED"
    return report.fmt_rate(x) if metric == "ops" else f"{x:.3f}"


def fmt_ratio(r):
    """3 decimals; more when unequal Ir counts would print as 1.000."""
    text = f"{r.ratio:.3f}"
    if text == "1.000" and r.a_value != r.b_value and r.interval == (r.ratio, r.ratio):
        text = f"{r.ratio:.6f}"
    return text


def print_table(results, args):
    a, b, metric = args.a_name, args.b_name, args.metric
    unit = "ops/s" if metric == "ops" else "Ir/pair"
    if metric == "ops":
        title = (f"{b} / {a}: median ops/s over {args.rounds} interleaved "
                 f"round(s); ratio = median of per-round ratios B/A "
                 f"(> 1: B faster), 95% bootstrap interval over the rounds")
    else:
        title = (f"{b} / {a}: instructions per malloc+free pair inside malloc "
                 f"and free (callgrind, (Ir({ir.N2}) - Ir({ir.N1})) / "
                 f"{ir.N2 - ir.N1}); ratio = B/A (< 1: B fewer instructions), "
                 f"deterministic")
    lines = []
    for r in results:
        ratio = "-" if r.ratio is None else fmt_ratio(r)
        interval = ("-" if r.interval is None else
                    f"[{r.interval[0]:.3f}, {r.interval[1]:.3f}]")
        if metric == "ir" and r.interval:
            interval = f"[{ratio}, {ratio}]"
        fails = ""
        if r.a_failed or r.b_failed:
            fails = f" ({r.a_failed} A / {r.b_failed} B runs failed)"
        lines.append([r.workload.label, fmt_value(r.a_value, metric),
                      fmt_value(r.b_value, metric), ratio, interval,
                      r.verdict + fails])
    report.table(title, ["workload", f"A {a} {unit}", f"B {b} {unit}", "B/A",
                         "95% interval", "verdict"], lines)


def write_csv(path, results, args):
    def num(x, digits):
        return "" if x is None else f"{x:.{digits}f}"
    vdig = 0 if args.metric == "ops" else 4
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for r in results:
            lo, hi = r.interval if r.interval else (None, None)
            out.writerow([r.workload.name, args.metric, args.a_name,
                          args.b_name, r.pairs, num(r.a_value, vdig),
                          num(r.b_value, vdig), num(r.ratio, 6), num(lo, 6),
                          num(hi, 6), r.verdict, r.a_failed, r.b_failed])


def main():
    args = parse_args()
    workloads = benchlib.select_workloads(args.bench)
    if args.metric == "ir":
        other = [w.name for w in workloads if w.group not in ("fixed", "mixed")]
        if other:
            benchlib.die(f"--metric ir measures the fixed and mixed workloads "
                         f"only, not {other}")
    for prog in sorted({w.group for w in workloads}):
        if not (args.bin_dir / prog).is_file():
            benchlib.die(f"{args.bin_dir / prog} not found (make bench-bins)")

    a, b = args.allocs
    print(f"ab: A {args.a_name}={a.preload}\n    B {args.b_name}={b.preload}\n"
          f"    metric {args.metric}, "
          + (f"{run.plural(args.rounds, 'round')}, " if args.metric == "ops"
             else "")
          + f"{run.plural(len(workloads), 'workload')}", file=sys.stderr)
    rows = []
    if args.metric == "ops":
        results, rows = measure_ops(workloads, args)
    else:
        results = measure_ir(workloads, args)
    print_table(results, args)

    stem = f"{args.a_name}-vs-{args.b_name}"
    write_csv(args.out / f"{stem}.csv", results, args)
    written = [f"{stem}.csv"]
    if rows:
        report.write_raw_csv(args.out / f"{stem}-rounds.csv", rows)
        written.append(f"{stem}-rounds.csv")
    failed = [r for r in rows if r.outcome.status != "ok"]
    for r in failed:
        print(f"FAILED: round {r.round} {r.workload.name} {r.alloc}: "
              f"{r.outcome.status}")
    print(f"\nab: results in {args.out}/ ({', '.join(written)})")
    bad = failed or any(r.ratio is None for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
