#!/usr/bin/env python3
"""Run the benchmark suite: every workload under every allocator, interleaved.

Each round runs every workload once under every allocator (plus, for the
fixed workloads, the static specialized build), rotating the allocator order
from round to round so that no allocator always runs first, last, or right
after the same other one. The report compares one allocator (the subject,
normally hakmem) with each of the others by the median of its paired
per-round ratios.

  bench/run.py --peers --hakmem build/default/libhakmem.so \
               --static-dir build/default/bench [--quick] [--bench fixed,mixed]
  bench/run.py --alloc x=build/x/libhakmem.so --alloc y=build/y/libhakmem.so

Exit status: 0 when every run of the subject and of its own builds
(SUBJECT-NAME: hakmem-trusted, hakmem-static) succeeded, 1 when one failed
(crash, timeout, wrong checksum), 2 on a usage error. Timings never decide it.
"""

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import benchlib
import report
from benchlib import ROOT, STATIC, note


@dataclass(frozen=True)
class Runner:
    """One column of a round: an allocator, or the static build."""
    name: str
    argv: tuple
    env: dict


@dataclass
class Row:
    round: int
    position: int     # 1-based place of this run in its round's order
    workload: benchlib.Workload
    alloc: str
    outcome: benchlib.Outcome


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_alloc_args(ap)
    ap.add_argument("--bench", metavar="LIST",
                    help="comma-separated workloads or programs (default: all)")
    ap.add_argument("--rounds", type=int, help="rounds (default 7, quick 3)")
    ap.add_argument("--quick", action="store_true",
                    help="3 rounds, smaller iteration counts")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "build" / "bench",
                    help="where the workload binaries are")
    ap.add_argument("--static-dir", type=Path,
                    help="where fixed_static_SIZE binaries are (omit: no "
                         "static rows)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                    help="directory for latest.csv, summary.csv, ratios.png")
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds before one run counts as failed")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.rounds < 1:
        benchlib.die("--rounds must be at least 1")
    if not args.timeout > 0:  # nan too
        benchlib.die("--timeout must be a positive number of seconds")
    benchlib.make_out_dir(args.out)
    return args


def make_runners(workloads, allocs, args):
    """workload name -> its runners, in the order of round 1."""
    missing = [w.group for w in workloads
               if not (args.bin_dir / w.group).is_file()]
    if missing:
        benchlib.die(f"missing benchmark binaries in {args.bin_dir}: "
                     f"{sorted(set(missing))} (build them: make bench)")
    runners = {}
    static_missing = []
    for w in workloads:
        a = w.quick_args if args.quick else w.args
        rs = [Runner(al.name, (args.bin_dir / w.group, *a), al.env())
              for al in allocs]
        if args.static_dir and w.static_size:
            binary = args.static_dir / f"fixed_static_{w.static_size}"
            if binary.is_file():
                rs.append(Runner(STATIC, (binary, a[0], a[2]),
                                 benchlib.Alloc(STATIC, None).env()))
            else:
                static_missing.append(binary.name)
        runners[w.name] = rs
    if static_missing:
        note(f"static specialized build skipped for {', '.join(static_missing)}"
             f": not found in {args.static_dir} (hakmem.h or libhakmem.a "
             f"missing, or the build failed: see {args.static_dir}/"
             f"static-build.log)")
    return runners


class Progress:
    """`[ 37/175] round 2/5 mixed ws=256 jemalloc` on stderr."""

    def __init__(self, total):
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()

    def step(self, text, first_of_workload):
        self.done += 1
        line = f"[{self.done:>{len(str(self.total))}}/{self.total}] {text}"
        if self.tty:
            print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
        elif first_of_workload:
            print(line, file=sys.stderr, flush=True)

    def finish(self):
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def round_order(rnd, n):
    """Indices 0..n-1 in the order of round `rnd` (0-based): the rows of a
    Williams Latin square, each a rotation of 0, 1, n-1, 2, n-2, ... Over n
    rounds every runner takes every position once and (n even) follows every
    other runner once, so neither position nor predecessor biases a ratio."""
    base = [0] + [(j + 1) // 2 if j % 2 else n - j // 2 for j in range(1, n)]
    return [(b + rnd) % n for b in base]


def run_rounds(workloads, runners, args):
    total = args.rounds * sum(len(rs) for rs in runners.values())
    progress = Progress(total)
    rows = []
    for r in range(args.rounds):
        for w in workloads:
            rs = runners[w.name]
            order = [rs[i] for i in round_order(r, len(rs))]
            for pos, run in enumerate(order):
                progress.step(f"round {r + 1}/{args.rounds} {w.label} "
                              f"{run.name}", pos == 0)
                out = benchlib.run_once(run.argv, run.env, args.timeout)
                rows.append(Row(r + 1, pos + 1, w, run.name, out))
    progress.finish()
    return rows


def check_checksums(rows, subject=None):
    """A workload's checksum is the same under every correct allocator: runs
    that disagree with the majority are marked failed. Each allocator votes
    once for each checksum it gave, however many of its rounds gave it, and
    the subject's own builds (hakmem-trusted, hakmem-static) vote with it:
    one implementation, one vote. With no single winner (two allocators that
    disagree, as in make ab, or hakmem against glibc alone) nothing tells
    which one is right: every run of that workload is marked failed."""
    def voter(alloc):
        own = subject and report.is_own_build(alloc, subject)
        return subject if own else alloc

    voters = {}  # workload -> checksum -> voters that gave it
    for row in rows:
        if row.outcome.status == "ok":
            voters.setdefault(row.workload.name, {}).setdefault(
                row.outcome.result.get("checksum"), set()).add(voter(row.alloc))
    for row in rows:
        sums = voters.get(row.workload.name, {})
        if row.outcome.status != "ok" or len(sums) < 2:
            continue
        got = row.outcome.result.get("checksum")
        (best, n1), (_, n2) = Counter(
            {c: len(v) for c, v in sums.items()}).most_common(2)
        if n1 == n2:
            others = " ".join(sorted(str(c) for c in sums if c != got))
            row.outcome.status = f"bad checksum {got}: no majority, also {others}"
        elif got != best:
            row.outcome.status = f"bad checksum {got} != {best}"


def exit_status(rows, subject):
    """1 when a run of the subject or of one of its own builds
    (hakmem-trusted, hakmem-static) failed, else 0: never a timing."""
    return int(any(r.outcome.status != "ok" and
                   (r.alloc == subject or report.is_own_build(r.alloc, subject))
                   for r in rows))


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def main():
    args = parse_args()
    allocs, subject = benchlib.allocs_from_args(args)
    workloads = benchlib.select_workloads(args.bench)
    runners = make_runners(workloads, allocs, args)

    print(f"bench: {plural(args.rounds, 'round')}"
          f"{' (quick)' if args.quick else ''}, "
          f"{plural(len(workloads), 'workload')}, allocators: "
          + ", ".join(f"{a.name}={a.preload or '(none)'}" for a in allocs),
          file=sys.stderr)
    t0 = time.monotonic()
    rows = run_rounds(workloads, runners, args)
    check_checksums(rows, subject)
    elapsed = time.monotonic() - t0

    names = [a.name for a in allocs]
    summary = report.summarize(rows, workloads, names, subject)
    report.write_raw_csv(args.out / "latest.csv", rows)
    report.write_summary_csv(args.out / "summary.csv", summary)
    report.print_tables(summary, workloads, names, subject, args.rounds)
    report.plot(args.out, summary, workloads, names, subject)

    failed = [r for r in rows if r.outcome.status != "ok"]
    for r in failed:
        print(f"FAILED: round {r.round} {r.workload.name} {r.alloc}: "
              f"{r.outcome.status}")
    print(f"\nbench: {len(rows)} runs in {elapsed:.0f} s; results in "
          f"{args.out}/ (latest.csv, summary.csv, ratios.png)")
    return exit_status(rows, subject)


if __name__ == "__main__":
    sys.exit(main())
