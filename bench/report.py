"""Turn bench/run.py's raw rows into medians, ratios, tables, CSVs and a plot.

A ratio is on ops per second, so > 1 means the first one is faster: the
subject (hakmem) / each peer, and each of the subject's own builds
(hakmem-trusted, hakmem-static) / the best peer, a row of its own that is
never a peer. It is the median over rounds of the per-round ratio (both runs
of a pair come from the same round, minutes apart at most, so the machine's
drift mostly cancels), with the min and max of those ratios.
"""

import csv
import shutil
import subprocess
from dataclasses import dataclass
from statistics import median

from benchlib import STATIC, note

# latest.csv's first columns; every other field of the RESULT lines follows
RAW_COLUMNS = ("round", "position", "workload", "alloc", "status", "ops",
               "secs", "ops_per_sec", "minflt", "maxrss_kb", "start_rss_kb",
               "peak_rss_kb", "final_rss_kb", "checksum")
SUMMARY_COLUMNS = ("workload", "alloc", "rounds_ok", "rounds_failed",
                   "ops_per_sec", "peak_rss_kb", "final_rss_kb", "ratio_of",
                   "ratio_to", "ratio_median", "ratio_min", "ratio_max")


@dataclass
class Stat:
    """One allocator on one workload, over all rounds."""
    workload: str
    alloc: str
    rounds_ok: int
    rounds_failed: int
    rates: dict                  # round -> ops/s, successful rounds only
    peak_rss_kb: float | None    # medians
    final_rss_kb: float | None
    ratio_of: str = ""
    ratio_to: str = ""
    ratio: tuple | None = None   # (median, min, max) of paired ratios

    @property
    def ops_per_sec(self):
        return median(self.rates.values()) if self.rates else None


def peak_kb(result):
    return float(result.get("peak_rss_kb", result["maxrss_kb"]))


def paired_ratio(num, den):
    """(median, min, max) of num[r] / den[r] over rounds r where both ran."""
    ratios = [num[r] / den[r] for r in num if r in den and den[r] > 0]
    return (median(ratios), min(ratios), max(ratios)) if ratios else None


def summarize(rows, workloads, names, subject):
    """-> {workload name: {alloc: Stat}}, allocators in column order, the
    static build last (only where it ran)."""
    results, failed = {}, {}
    for row in rows:
        key = (row.workload.name, row.alloc)
        if row.outcome.status == "ok":
            results.setdefault(key, {})[row.round] = row.outcome.result
        else:
            failed[key] = failed.get(key, 0) + 1

    summary = {}
    for w in workloads:
        stats = {}
        for a in columns(names, subject) + [STATIC]:
            key = (w.name, a)
            if a == STATIC and key not in results and key not in failed:
                continue
            res = results.get(key, {})
            finals = [float(r["final_rss_kb"]) for r in res.values()
                      if "final_rss_kb" in r]
            stats[a] = Stat(
                w.name, a, len(res), failed.get(key, 0),
                {rnd: float(r["ops_per_sec"]) for rnd, r in res.items()},
                median(peak_kb(r) for r in res.values()) if res else None,
                median(finals) if finals else None)
        peers, best = peers_of(names, subject), best_peer(stats, names, subject)
        for a, s in stats.items():
            if a == subject:
                continue
            of, to = (subject, a) if a in peers else (a, best)
            if to:
                s.ratio_of, s.ratio_to = of, to
                s.ratio = paired_ratio(stats[of].rates, stats[to].rates)
        summary[w.name] = stats
    return summary


def is_own_build(name, subject):
    """Another build of the subject (SUBJECT-something: hakmem-trusted,
    hakmem-static): a row of its own, never a peer."""
    return name.startswith(subject + "-")


def peers_of(names, subject):
    """The allocators the subject is compared with: neither it nor its own
    builds."""
    return [a for a in names if a != subject and not is_own_build(a, subject)]


def columns(names, subject):
    """The order of the tables and of summary.csv: the peers, the subject,
    then its own builds (the static build, not in `names`, comes after)."""
    return (peers_of(names, subject) + [subject]
            + [a for a in names if is_own_build(a, subject)])


def own_builds(summary, names, subject):
    """The subject's own builds that ran: those in `names` (hakmem-trusted),
    then the static build."""
    static = any(STATIC in stats for stats in summary.values())
    return ([a for a in names if is_own_build(a, subject)]
            + ([STATIC] if static else []))


def best_peer(stats, names, subject):
    """The fastest peer of the subject (by median ops/s)."""
    peers = [a for a in peers_of(names, subject) if stats[a].ops_per_sec]
    return max(peers, key=lambda a: stats[a].ops_per_sec, default=None)


# ---------------------------------------------------------------- CSV files

def write_raw_csv(path, rows):
    """One line per run: RAW_COLUMNS, then every other field a run reported
    (a workload's own: size, ws, nsmall, ...) in the order first seen, empty
    where a run did not report it. The program's own `workload=` (its name)
    gives way to the workload's id."""
    seen = dict.fromkeys(RAW_COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(row.outcome.result))
    columns = list(seen)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for row in rows:
            r = row.outcome.result
            out.writerow([row.round, row.position, row.workload.name, row.alloc,
                          row.outcome.status]
                         + [r.get(c, "") for c in columns[5:]])


def fmt_num(x, digits=0):
    return "" if x is None else f"{x:.{digits}f}"


def write_summary_csv(path, summary):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(SUMMARY_COLUMNS)
        for stats in summary.values():
            for s in stats.values():
                ratio = [fmt_num(x, 4) for x in s.ratio] if s.ratio else [""] * 3
                out.writerow([s.workload, s.alloc, s.rounds_ok, s.rounds_failed,
                              fmt_num(s.ops_per_sec), fmt_num(s.peak_rss_kb),
                              fmt_num(s.final_rss_kb), s.ratio_of, s.ratio_to]
                             + ratio)


# ---------------------------------------------------------------- tables

def fmt_rate(x):
    if x is None:
        return "FAILED"
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r[0]:.2f} [{r[1]:.2f}-{r[2]:.2f}]"


def mark_failures(text, s):
    return text + ("*" if s.rounds_failed and s.rounds_ok else "")


def table(title, header, lines):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    print(f"\n{title}")
    for i, line in enumerate([header] + lines):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w)
                 for j, (c, w) in enumerate(zip(line, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_tables(summary, workloads, names, subject, rounds):
    peers = peers_of(names, subject)
    own = own_builds(summary, names, subject)
    labels = {w.name: w.label for w in workloads}

    cols = peers + [subject] + own
    table(f"Throughput: median ops/s over {rounds} round(s) "
          "(op = one malloc + one free; * = some rounds failed)",
          ["workload"] + cols,
          [[labels[w]] + [mark_failures(fmt_rate(st[a].ops_per_sec), st[a])
                          if a in st else "" for a in cols]
           for w, st in summary.items()])

    table(f"{subject} / peer: median of per-round ratios [min-max]; "
          f"> 1 means {subject} is faster",
          ["workload"] + [f"vs {a}" for a in peers],
          [[labels[w]] + [fmt_ratio(st[a].ratio) for a in peers]
           for w, st in summary.items()])

    def best_peer_table(title, a, vs_subject=False):
        """vs_subject: a column of the subject / a too, paired (for the
        trusted build: what guarded mode's checks cost)."""
        def line(w, st):
            s = st[a]
            best = st[s.ratio_to].ops_per_sec if s.ratio_to else None
            cells = [labels[w], fmt_rate(s.ops_per_sec), s.ratio_to or "-",
                     fmt_rate(best) if best else "-", fmt_ratio(s.ratio)]
            if vs_subject:
                own = st.get(subject)
                cells.append(fmt_ratio(own and paired_ratio(own.rates, s.rates)))
            return cells
        header = ["workload", "ops/s", "best peer", "peer ops/s", "ratio [min-max]"]
        table(title, header + ([f"{subject} / it"] if vs_subject else []),
              [line(w, st) for w, st in summary.items() if a in st])

    for a in own:
        if a == STATIC:
            best_peer_table(f"Static specialized build ({STATIC}: hak_malloc "
                            "with a constant size, libhakmem.a), vs the best "
                            "peer on that size", a)
        else:
            best_peer_table(f"{a} (a build of {subject}: its own row, never a "
                            f"peer), vs the best peer on that workload; {subject} / it: "
                            f"what {subject}'s default build gives up to it", a, True)

    def rss(s):
        if s.peak_rss_kb is None:
            return "FAILED"
        text = f"{s.peak_rss_kb / 1024:.1f}"
        if s.final_rss_kb is not None:
            text += f" / {s.final_rss_kb / 1024:.1f}"
        return text

    rss_cols = columns(names, subject)
    table("Peak RSS, median MiB (phases: peak / final after freeing all)",
          ["workload"] + rss_cols,
          [[labels[w]] + [rss(st[a]) for a in rss_cols]
           for w, st in summary.items()])


# ---------------------------------------------------------------- plot

GNUPLOT = """\
set terminal pngcairo size 1280,560 font ",10" noenhanced
set output '{png}'
set title "throughput ratios per workload: {subject} / each peer, and {subject}'s own builds / the best peer (hatched); median of paired rounds, > 1: faster"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set datafile missing '?'
set logscale y 2
set yrange [{ymin}:{ymax}]
set ylabel "ratio (log scale)"
set grid ytics
set xtics rotate by -30 nomirror
set key outside right top
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black" front
plot for [i=2:{last_peer}] '{dat}' using i:xtic(1) title columnheader(i), \\
     for [i={last_peer}+1:{last}] '{dat}' using i title columnheader(i) \\
         lc rgb "black" fill pattern i - {last_peer} + 3
"""


def plot(out_dir, summary, workloads, names, subject):
    """One bar series per peer (the subject / it), then one per own build of
    the subject (it / the best peer), hatched."""
    peers, own = peers_of(names, subject), own_builds(summary, names, subject)
    series = peers + own
    titles = peers + [f"{a} / best peer" for a in own]
    labels = {w.name: f'"{w.label}"' for w in workloads}

    ratios = {w: [st[a].ratio[0] if a in st and st[a].ratio else None
                  for a in series] for w, st in summary.items()}
    known = [r for rs in ratios.values() for r in rs if r is not None]
    if not known:
        return
    dat = out_dir / "ratios.dat"
    with open(dat, "w") as f:
        f.write("workload " + " ".join(f'"{t}"' for t in titles) + "\n")
        for w, rs in ratios.items():
            f.write(labels[w] + " " + " ".join(
                "?" if r is None else f"{r:.4f}" for r in rs) + "\n")
    # The y range always shows 0.5..2 and the 1.0 line, however close to 1.
    ymin, ymax = min(known + [0.5]) / 1.2, max(known + [2.0]) * 1.2
    script = out_dir / "ratios.gp"
    script.write_text(GNUPLOT.format(png=out_dir / "ratios.png", dat=dat,
                                     subject=subject, last_peer=len(peers) + 1,
                                     last=len(series) + 1,
                                     ymin=ymin, ymax=ymax))
    if shutil.which("gnuplot") is None:
        note("gnuplot not found: no ratios.png (apt-get install gnuplot-nox)")
        return
    p = subprocess.run(["gnuplot", str(script)], capture_output=True, text=True)
    if p.returncode != 0:
        note(f"gnuplot failed: {p.stderr.strip()}")
