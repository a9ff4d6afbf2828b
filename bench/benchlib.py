"""Shared pieces of bench/run.py and bench/ir.py: allocators, workloads, runs.

An *allocator* is a name and an LD_PRELOAD path (None: the system's glibc
malloc). Every workload binary is allocator-independent; the allocator is
injected through the environment, so each run is one process.
"""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = "hakmem-static"  # the static specialized build's rows
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")

# name -> shared object, searched in LIB_DIRS (installed by install-peers.sh)
PEER_LIBS = {
    "mimalloc": "libmimalloc.so.2",
    "jemalloc": "libjemalloc.so.2",
    "tcmalloc": "libtcmalloc_minimal.so.4",
}


@dataclass(frozen=True)
class Alloc:
    name: str
    preload: str | None  # absolute path, or None for glibc

    def env(self):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if self.preload:
            env["LD_PRELOAD"] = self.preload
        return env


def note(msg):
    print(f"note: {msg}", file=sys.stderr)


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def make_out_dir(path):
    """Create the results directory before the first run: a bad --out is a
    usage error, not a traceback once every run is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        die(f"--out {path}: {e.strerror}")
    if not os.access(path, os.W_OK):
        die(f"--out {path}: not writable")


def find_peers():
    """glibc plus every peer library found on this system (missing: a note)."""
    peers = [Alloc("glibc", None)]
    for name, lib in PEER_LIBS.items():
        path = next((Path(d) / lib for d in LIB_DIRS if (Path(d) / lib).exists()),
                    None)
        if path is None:
            note(f"{name} skipped: {lib} not found in {' or '.join(LIB_DIRS)}")
        else:
            peers.append(Alloc(name, str(path)))
    return peers


def parse_alloc(spec):
    """NAME=PATH (empty PATH: glibc, no preload) -> Alloc; PATH must exist."""
    name, sep, path = spec.partition("=")
    if not sep or not name:
        die(f"--alloc wants NAME=PATH (PATH may be empty), got {spec!r}")
    if not path:
        return Alloc(name, None)
    if not Path(path).is_file():
        die(f"allocator {name}: {path} not found"
            + (" (build it first: make)" if "libhakmem" in path else ""))
    return Alloc(name, os.path.abspath(path))


def add_alloc_args(ap):
    ap.add_argument("--alloc", action="append", default=[], metavar="NAME=PATH",
                    help="an allocator to run (repeatable); empty PATH = glibc")
    ap.add_argument("--peers", action="store_true",
                    help="add glibc, mimalloc, jemalloc, tcmalloc (those found)")
    ap.add_argument("--hakmem", metavar="PATH",
                    help="shorthand for --alloc hakmem=PATH")
    ap.add_argument("--subject", metavar="NAME",
                    help="allocator whose ratios to the others are reported "
                         "(default: hakmem if given, else the last --alloc)")


def allocs_from_args(args):
    """The allocator list in command-line order (peers first) and the subject."""
    allocs = find_peers() if args.peers else []
    allocs += [parse_alloc(s) for s in args.alloc]
    if args.hakmem is not None:
        allocs.append(parse_alloc(f"hakmem={args.hakmem}"))
    names = [a.name for a in allocs]
    if not allocs:
        die("no allocators: give --peers, --hakmem PATH or --alloc NAME=PATH")
    if len(set(names)) != len(names):
        die(f"allocator names must be unique: {names}")
    subject = args.subject or ("hakmem" if "hakmem" in names else names[-1])
    if subject not in names:
        die(f"--subject {subject}: no such allocator among {names}")
    return allocs, subject


@dataclass(frozen=True)
class Workload:
    name: str        # unique id, used in CSVs and --bench
    group: str       # program name; --bench accepts it too
    label: str       # for tables
    args: tuple      # full run
    quick_args: tuple  # QUICK=1
    static_size: int | None = None  # fixed: size of the static build's row


FIXED_SIZES = (16, 32, 64, 128, 256, 512, 1024)
FIXED_WS = 128


def workloads():
    ws = []
    for s in FIXED_SIZES:
        ws.append(Workload(f"fixed{s}", "fixed", f"fixed {s}B",
                           (20_000_000, s, FIXED_WS), (4_000_000, s, FIXED_WS),
                           static_size=s))
    for n in (256, 8192):
        ws.append(Workload(f"mixed{n}", "mixed", f"mixed ws={n}",
                           (10_000_000, n), (2_500_000, n)))
    # The threaded rows run about 0.15-0.3 s under the fast allocators: at a
    # quarter of that (until 2026-11-29) single rounds of 40-100 ms spread
    # from 0.5x to 1.6x, the scheduler's noise more than the allocators'.
    ws.append(Workload("mid_mt2", "mid_mt", "mid_mt 2T", (2, 8_000_000), (2, 250_000)))
    ws.append(Workload("mid_mt4", "mid_mt", "mid_mt 4T", (4, 4_000_000), (4, 125_000)))
    ws.append(Workload("larson2", "larson", "larson 2T", (2, 16_000_000), (2, 500_000)))
    ws.append(Workload("larson4", "larson", "larson 4T", (4, 8_000_000), (4, 250_000)))
    ws.append(Workload("phases", "phases", "phases", (1_000_000,), (200_000,)))
    ws.append(Workload("large", "large", "large", (500,), (50,)))
    ws.append(Workload("appmix", "appmix", "appmix", (300_000, 100_000), (50_000, 100_000)))
    return ws


def select_workloads(spec):
    """--bench a,b: workload ids or program names; None: all of them."""
    all_ws = workloads()
    if not spec:
        return all_ws
    wanted = [w for w in spec.split(",") if w]
    if not wanted:
        die(f"--bench {spec!r} names no workload")
    known = {w.name for w in all_ws} | {w.group for w in all_ws}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        die(f"unknown workload(s) {unknown}; known: {sorted(known)}")
    return [w for w in all_ws if w.name in wanted or w.group in wanted]


@dataclass
class Outcome:
    status: str                 # "ok", or why the run failed
    result: dict = field(default_factory=dict)  # RESULT key=value fields


def parse_result(stdout):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    return None


def run_once(argv, env, timeout):
    """Run one benchmark process; never raises for a failing program."""
    try:
        # errors="replace": a crashing allocator may write any bytes.
        p = subprocess.run([str(a) for a in argv], env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, errors="replace")
    except subprocess.TimeoutExpired:
        return Outcome(f"timeout>{timeout}s")
    except OSError as e:
        return Outcome(f"cannot run: {e.strerror}")
    if p.returncode < 0:
        return Outcome(f"signal {-p.returncode}")
    if p.returncode != 0:
        return Outcome(f"exit {p.returncode}")
    result = parse_result(p.stdout)
    if result is None:
        return Outcome("no RESULT line")
    return Outcome("ok", result)
