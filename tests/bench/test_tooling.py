"""The benchmark tooling's pure parts (bench/*.py), without running a benchmark.

Run from the repository root:  python3 -m unittest discover -s tests/bench -t .
"""
import contextlib
import io
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import benchlib  # noqa: E402
import ir  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402

FIXED64 = next(w for w in benchlib.workloads() if w.name == "fixed64")


def rows(runs):
    """[(round, alloc, checksum)] -> run.Row list, all ok."""
    return [run.Row(rnd, 1, FIXED64, alloc,
                    benchlib.Outcome("ok", {"checksum": c, "ops_per_sec": "1"}))
            for rnd, alloc, c in runs]


def statuses(rs):
    return [(r.round, r.alloc, r.outcome.status) for r in rs]


class CheckChecksumsTest(unittest.TestCase):
    def test_all_agree(self):
        rs = rows([(1, "a", "7"), (1, "b", "7"), (2, "b", "7"), (2, "a", "7")])
        run.check_checksums(rs)
        self.assertEqual({r.outcome.status for r in rs}, {"ok"})

    def test_minority_allocator_fails(self):
        rs = rows([(1, "a", "7"), (1, "b", "7"), (1, "c", "8"),
                   (2, "c", "8"), (2, "a", "7"), (2, "b", "7")])
        run.check_checksums(rs)
        self.assertEqual(statuses(rs), [
            (1, "a", "ok"), (1, "b", "ok"), (1, "c", "bad checksum 8 != 7"),
            (2, "c", "bad checksum 8 != 7"), (2, "a", "ok"), (2, "b", "ok")])

    def test_two_allocators_that_disagree_both_fail(self):
        # make ab with a broken A: A runs first in round 1, and must not be
        # taken for the right one.
        rs = rows([(1, "a", "8"), (1, "b", "7"), (2, "b", "7"), (2, "a", "8")])
        run.check_checksums(rs)
        self.assertEqual(statuses(rs), [
            (1, "a", "bad checksum 8: no majority, also 7"),
            (1, "b", "bad checksum 7: no majority, also 8"),
            (2, "b", "bad checksum 7: no majority, also 8"),
            (2, "a", "bad checksum 8: no majority, also 7")])

    def test_a_crash_does_not_make_a_majority(self):
        # b's round 2 crashed: a's two good rounds still outvote nobody.
        rs = rows([(1, "a", "8"), (1, "b", "7"), (2, "a", "8")])
        rs.append(run.Row(2, 2, FIXED64, "b", benchlib.Outcome("signal 11")))
        run.check_checksums(rs)
        self.assertEqual([r.outcome.status for r in rs], [
            "bad checksum 8: no majority, also 7",
            "bad checksum 7: no majority, also 8",
            "bad checksum 8: no majority, also 7", "signal 11"])

    def test_the_subjects_own_builds_vote_with_it(self):
        # a broken hakmem must not outvote glibc, alone where the peers
        # could not be installed, by its three builds
        rs = rows([(1, "glibc", "7"), (1, "hakmem", "8"),
                   (1, "hakmem-trusted", "8"), (1, "hakmem-static", "8")])
        run.check_checksums(rs, "hakmem")
        self.assertEqual([r.outcome.status for r in rs],
                         ["bad checksum 7: no majority, also 8"]
                         + ["bad checksum 8: no majority, also 7"] * 3)
        rs = rows([(1, "glibc", "7"), (1, "jemalloc", "7"), (1, "hakmem", "8"),
                   (1, "hakmem-trusted", "8"), (1, "hakmem-static", "8")])
        run.check_checksums(rs, "hakmem")
        self.assertEqual(statuses(rs), [
            (1, "glibc", "ok"), (1, "jemalloc", "ok"),
            (1, "hakmem", "bad checksum 8 != 7"),
            (1, "hakmem-trusted", "bad checksum 8 != 7"),
            (1, "hakmem-static", "bad checksum 8 != 7")])

    def test_workloads_are_judged_apart(self):
        mixed = next(w for w in benchlib.workloads() if w.name == "mixed256")
        rs = rows([(1, "a", "7"), (1, "b", "7"), (1, "c", "7")])
        rs += [run.Row(1, 1, mixed, a, benchlib.Outcome("ok", {"checksum": "5"}))
               for a in "abc"]
        run.check_checksums(rs)
        self.assertEqual({r.outcome.status for r in rs}, {"ok"})


class ExitStatusTest(unittest.TestCase):
    def status(self, failing_alloc):
        rs = rows([(1, a, "7") for a in ("glibc", "hakmem", "hakmem-trusted",
                                         "hakmem-static")])
        for r in rs:
            if r.alloc == failing_alloc:
                r.outcome.status = "signal 11"
        return run.exit_status(rs, "hakmem")

    def test_subject_and_its_own_builds(self):
        self.assertEqual(self.status(None), 0)
        self.assertEqual(self.status("glibc"), 0)  # a peer's failure is listed only
        self.assertEqual(self.status("hakmem"), 1)
        self.assertEqual(self.status("hakmem-static"), 1)
        # was 0: make bench passed over a crash of the trusted build
        self.assertEqual(self.status("hakmem-trusted"), 1)


MIXED256 = next(w for w in benchlib.workloads() if w.name == "mixed256")

# M ops/s in rounds 1 and 2, in make bench's order: the trusted build comes
# before hakmem on the command line, and is the fastest.
RATES = {
    FIXED64: {"glibc": (100, 100), "jemalloc": (200, 160), "hakmem": (250, 200),
              "hakmem-trusted": (300, 208), "hakmem-static": (800, 640)},
    MIXED256: {"glibc": (50, 50), "jemalloc": (40, 40), "hakmem": (60, 45),
               "hakmem-trusted": (70, 55)},
}
NAMES = ["glibc", "jemalloc", "hakmem-trusted", "hakmem"]


def rate_rows():
    return [run.Row(rnd, 1, w, a, benchlib.Outcome(
                "ok", {"ops_per_sec": str(r[rnd - 1] * 10**6), "maxrss_kb": "2048"}))
            for w, allocs in RATES.items() for a, r in allocs.items()
            for rnd in (1, 2)]


class ReportTest(unittest.TestCase):
    """The trusted build is a row of hakmem's own, against the best peer, as
    the static build is; never a peer (was: a `vs hakmem-trusted` column)."""
    def setUp(self):
        self.summary = report.summarize(rate_rows(), list(RATES), NAMES, "hakmem")
        self.dir = tempfile.TemporaryDirectory()
        self.out = Path(self.dir.name)

    def tearDown(self):
        self.dir.cleanup()

    def test_tables(self):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            report.print_tables(self.summary, list(RATES), NAMES, "hakmem", 2)
        self.assertEqual(out.getvalue(), """
Throughput: median ops/s over 2 round(s) (op = one malloc + one free; * = some rounds failed)
workload       glibc  jemalloc  hakmem  hakmem-trusted  hakmem-static
------------  ------  --------  ------  --------------  -------------
fixed 64B     100.0M    180.0M  225.0M          254.0M         720.0M
mixed ws=256   50.0M     40.0M   52.5M           62.5M

hakmem / peer: median of per-round ratios [min-max]; > 1 means hakmem is faster
workload              vs glibc       vs jemalloc
------------  ----------------  ----------------
fixed 64B     2.25 [2.00-2.50]  1.25 [1.25-1.25]
mixed ws=256  1.05 [0.90-1.20]  1.31 [1.12-1.50]

hakmem-trusted (a build of hakmem: its own row, never a peer), vs the best peer on that workload; hakmem / it: what hakmem's default build gives up to it
workload       ops/s  best peer  peer ops/s   ratio [min-max]       hakmem / it
------------  ------  ---------  ----------  ----------------  ----------------
fixed 64B     254.0M   jemalloc      180.0M  1.40 [1.30-1.50]  0.90 [0.83-0.96]
mixed ws=256   62.5M      glibc       50.0M  1.25 [1.10-1.40]  0.84 [0.82-0.86]

Static specialized build (hakmem-static: hak_malloc with a constant size, libhakmem.a), vs the best peer on that size
workload    ops/s  best peer  peer ops/s   ratio [min-max]
---------  ------  ---------  ----------  ----------------
fixed 64B  720.0M   jemalloc      180.0M  4.00 [4.00-4.00]

Peak RSS, median MiB (phases: peak / final after freeing all)
workload      glibc  jemalloc  hakmem  hakmem-trusted
------------  -----  --------  ------  --------------
fixed 64B       2.0       2.0     2.0             2.0
mixed ws=256    2.0       2.0     2.0             2.0
""")

    def test_summary_csv(self):
        report.write_summary_csv(self.out / "summary.csv", self.summary)
        self.assertEqual((self.out / "summary.csv").read_text().splitlines()[1:], [
            "fixed64,glibc,2,0,100000000,2048,,hakmem,glibc,2.2500,2.0000,2.5000",
            "fixed64,jemalloc,2,0,180000000,2048,,hakmem,jemalloc,1.2500,1.2500,1.2500",
            "fixed64,hakmem,2,0,225000000,2048,,,,,,",
            "fixed64,hakmem-trusted,2,0,254000000,2048,,hakmem-trusted,jemalloc,"
            "1.4000,1.3000,1.5000",
            "fixed64,hakmem-static,2,0,720000000,2048,,hakmem-static,jemalloc,"
            "4.0000,4.0000,4.0000",
            "mixed256,glibc,2,0,50000000,2048,,hakmem,glibc,1.0500,0.9000,1.2000",
            "mixed256,jemalloc,2,0,40000000,2048,,hakmem,jemalloc,1.3125,1.1250,1.5000",
            "mixed256,hakmem,2,0,52500000,2048,,,,,,",
            "mixed256,hakmem-trusted,2,0,62500000,2048,,hakmem-trusted,glibc,"
            "1.2500,1.1000,1.4000"])

    def test_plot_data(self):
        with contextlib.redirect_stderr(io.StringIO()):  # no gnuplot: a note
            report.plot(self.out, self.summary, list(RATES), NAMES, "hakmem")
        self.assertEqual((self.out / "ratios.dat").read_text(),
                         'workload "glibc" "jemalloc" "hakmem-trusted / best peer"'
                         ' "hakmem-static / best peer"\n'
                         '"fixed 64B" 2.2500 1.2500 1.4000 4.0000\n'
                         '"mixed ws=256" 1.0500 1.3125 1.2500 ?\n')


class RawCsvTest(unittest.TestCase):
    def test_every_field_of_a_result(self):
        # was: no start_rss_kb (phases), nor any of a workload's own fields
        phases = next(w for w in benchlib.workloads() if w.name == "phases")
        result = benchlib.parse_result
        rs = [run.Row(1, 1, FIXED64, "glibc", benchlib.Outcome("ok", result(
                  "RESULT workload=fixed size=64 ws=128 ops=4 secs=0.5 "
                  "ops_per_sec=8 minflt=10 maxrss_kb=1500 checksum=99"))),
              run.Row(1, 2, phases, "hakmem", benchlib.Outcome("ok", result(
                  "RESULT workload=phases nsmall=4 nbig=1 start_rss_kb=1000 "
                  "peak_rss_kb=3000 final_rss_kb=1200 ops=5 secs=0.5 "
                  "ops_per_sec=10 minflt=20 maxrss_kb=3000 checksum=77"))),
              run.Row(2, 1, phases, "glibc", benchlib.Outcome("signal 11"))]
        with tempfile.TemporaryDirectory() as tmp:
            report.write_raw_csv(Path(tmp) / "latest.csv", rs)
            text = (Path(tmp) / "latest.csv").read_text()
        self.assertEqual(text, """\
round,position,workload,alloc,status,ops,secs,ops_per_sec,minflt,maxrss_kb,\
start_rss_kb,peak_rss_kb,final_rss_kb,checksum,size,ws,nsmall,nbig
1,1,fixed64,glibc,ok,4,0.5,8,10,1500,,,,99,64,128,,
1,2,phases,hakmem,ok,5,0.5,10,20,3000,1000,3000,1200,77,,,4,1
2,1,phases,glibc,signal 11,,,,,,,,,,,,,
""")


class SelectWorkloadsTest(unittest.TestCase):
    def names(self, spec):
        return [w.name for w in benchlib.select_workloads(spec)]

    def test_names_and_programs(self):
        self.assertEqual(self.names("mixed,fixed64"),
                         ["fixed64", "mixed256", "mixed8192"])
        self.assertEqual(len(self.names(None)), len(benchlib.workloads()))

    def usage_error(self, spec):
        with self.assertRaises(SystemExit) as cm, \
                contextlib.redirect_stderr(io.StringIO()) as err:
            benchlib.select_workloads(spec)
        self.assertEqual(cm.exception.code, 2)
        return err.getvalue()

    def test_unknown_name(self):
        self.assertIn("unknown workload(s) ['fixed65']",
                      self.usage_error("fixed64,fixed65"))

    def test_no_name_at_all(self):
        # was: zero workloads, empty results written over the last ones, exit 0
        self.assertEqual(self.usage_error(","),
                         "error: --bench ',' names no workload\n")


class UsageErrorTest(unittest.TestCase):
    """Bad arguments: one line on stderr, exit 2, nothing run."""
    def check(self, script, args, message):
        p = subprocess.run([sys.executable, os.path.join(REPO, "bench", script),
                            *args], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (2, "", f"error: {message}\n"))

    def test_timeout(self):
        lib = ("--a", "a=/bin/true", "--b", "b=/bin/true")
        for t in ("0", "-1", "nan"):
            self.check("run.py", ("--alloc", "a=", "--timeout", t),
                       "--timeout must be a positive number of seconds")
            self.check("ab.py", lib + ("--timeout", t),
                       "--timeout must be a positive number of seconds")

    def test_out(self):
        # was: every run first, then a traceback from mkdir, results lost
        for script, args in (("run.py", ("--alloc", "a=")),
                             ("ir.py", ("--alloc", "a=")),
                             ("ab.py", ("--a", "a=/bin/true", "--b", "b=/bin/true"))):
            self.check(script, args + ("--out", "/dev/null/x"),
                       "--out /dev/null/x: Not a directory")

    def test_rounds(self):
        self.check("run.py", ("--alloc", "a=", "--rounds", "0"),
                   "--rounds must be at least 1")

    def test_alloc(self):
        self.check("run.py", ("--alloc", "a",),
                   "--alloc wants NAME=PATH (PATH may be empty), got 'a'")
        self.check("run.py", ("--alloc", "a=", "--alloc", "a="),
                   "allocator names must be unique: ['a', 'a']")


class RunOnceTest(unittest.TestCase):
    def py(self, code):
        return benchlib.run_once([sys.executable, "-c", code], None, 60)

    def test_result_line(self):
        out = self.py("print('noise'); print('RESULT workload=x ops=3 checksum=9')")
        self.assertEqual((out.status, out.result),
                         ("ok", {"workload": "x", "ops": "3", "checksum": "9"}))

    def test_bytes_that_are_not_utf8(self):
        # an allocator's dying words can be any bytes: a failed run, no traceback
        out = self.py("import os, sys; sys.stdout.buffer.write(b'\\xff\\n'); "
                      "os.write(2, b'\\xfe\\xff junk\\n'); sys.exit(3)")
        self.assertEqual(out.status, "exit 3")
        out = self.py("import os; os.write(2, b'\\xff'); print('RESULT ops=1')")
        self.assertEqual((out.status, out.result), ("ok", {"ops": "1"}))

    def test_failures(self):
        self.assertEqual(self.py("import os; os.kill(os.getpid(), 9)").status,
                         "signal 9")
        self.assertEqual(self.py("print('no result')").status, "no RESULT line")
        self.assertEqual(benchlib.run_once(
            [sys.executable, "-c", "import time; time.sleep(30)"], None, 0.2).status,
            "timeout>0.2s")


@unittest.skipUnless(shutil.which("valgrind"), "no valgrind")
class TotalIrTest(unittest.TestCase):
    def test_a_hung_run_times_out(self):
        # was: no timeout, make bench-ir waited forever
        argv = [sys.executable, "-c", "import time; time.sleep(600)"]
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertIsNone(ir.total_ir(argv, None, timeout=0.5))
        self.assertEqual(err.getvalue(), "note: " + " ".join(argv)
                         + " timed out under callgrind (>0.5s)\n")

    def test_a_count(self):
        self.assertGreater(ir.total_ir(["/bin/true"], None), 0)


# guarded malloc at 7a3f84b as `objdump -d` shows it: its hit ends with the
# ret at 0x1847e, the first of its slow jumps follows
MALLOC_DUMP = """
0000000000018440 <__libc_malloc>:
   18440:\t48 81 ff 00 04 00 00 \tcmp    $0x400,%rdi
   18447:\t77 37                \tja     18480 <__libc_malloc+0x40>
   18476:\t48 c7 42 08 00 00 00 \tmovq   $0x0,0x8(%rdx)
   1847d:\t00\x20
   1847e:\tc3                   \tret
   1847f:\t90                   \tnop
   18480:\te9 1b 00 00 00       \tjmp    184a0 <__libc_malloc+0x60>
   18485:\tc3                   \tret
"""


class HitPathTest(unittest.TestCase):
    """bench-ir's table of hit paths in code: bytes from the entry to the
    first ret, and the 64-byte lines they touch."""
    def test_first_ret_end(self):
        self.assertEqual(ir.first_ret_end(MALLOC_DUMP), 0x1847f)
        self.assertEqual(ir.first_ret_end(
            "  1000:\tf3 c3                \trepz ret\n"), 0x1002)
        self.assertEqual(ir.first_ret_end(
            "  1000:\tf2 c3                \tbnd ret\n"), 0x1002)
        self.assertIsNone(ir.first_ret_end(
            "  1000:\te9 00 00 00 00       \tjmp    1005 <f+0x5>\n"))
        # a mnemonic that only starts like one is not a ret
        self.assertIsNone(ir.first_ret_end(
            "  1000:\t0f 01 d0             \txgetbv\n"))

    def test_code_lines(self):
        self.assertEqual(ir.code_lines(0x18440, 63), 1)
        self.assertEqual(ir.code_lines(0x18440, 64), 1)
        self.assertEqual(ir.code_lines(0x18440, 65), 2)  # the ret on the next line
        self.assertEqual(ir.code_lines(0x18430, 16), 1)
        self.assertEqual(ir.code_lines(0x18430, 17), 2)
        self.assertEqual(ir.code_lines(0x184c0, 129), 3)

    @unittest.skipUnless(shutil.which("gcc") and shutil.which("objdump"), "no gcc or objdump")
    def test_a_library(self):
        with tempfile.TemporaryDirectory() as tmp:
            src, lib = Path(tmp) / "m.c", Path(tmp) / "libhakmem.so"
            # malloc: xor %eax,%eax; ret (3 bytes); free: ret (1 byte)
            src.write_text("__attribute__((aligned(64))) void *malloc(unsigned long n)"
                           " { (void)n; return 0; }\n"
                           "__attribute__((aligned(64))) void free(void *p) { (void)p; }\n")
            subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fcf-protection=none",
                            "-fno-builtin", "-o", str(lib), str(src)], check=True)
            self.assertEqual(ir.hit_path(lib, "malloc"), (3, 1))
            self.assertEqual(ir.hit_path(lib, "free"), (1, 1))
            self.assertIsNone(ir.hit_path(lib, "calloc"))
            self.assertIsNone(ir.hit_path(Path(tmp) / "none.so", "malloc"))
            rows = ir.hit_path_rows([benchlib.Alloc("glibc", None),
                                     benchlib.Alloc("tcmalloc", "/x/libtcmalloc.so"),
                                     benchlib.Alloc("hakmem", str(lib)),
                                     benchlib.Alloc("gone", str(Path(tmp) / "x" / "libhakmem.so"))])
        # only hakmem builds have a row; "-" where the library cannot be read
        self.assertEqual(rows, [["hakmem", "3 B, 1 line", "1 B, 1 line"],
                                ["gone", "-", "-"]])


BIN = os.path.join(REPO, "build", "bench")


class BenchFloorTest(unittest.TestCase):
    """make bench-floor takes QUICK and BENCH as make bench does (was: both
    ignored, the full counts of fixed, mixed and larson every time)."""
    def run_py_args(self, *make_vars):
        # not the variables of a make test-bench QUICK=1 that runs this test
        env = {k: v for k, v in os.environ.items() if k not in (
            "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VARIANT", "BUILD", "QUICK",
            "BENCH", "ROUNDS")}
        p = subprocess.run(["make", "-n", "--no-print-directory", "bench-floor",
                            "FLOOR_PEER=", *make_vars], cwd=REPO, env=env,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        command = p.stdout.split(" bench/run.py ", 1)[1]
        return shlex.split(command.replace("\\\n", " ").splitlines()[0])

    def expected(self, *flags):
        return ["--alloc", f"floor-array={BIN}/floor-array.so",
                "--alloc", f"floor-list={BIN}/floor-list.so",
                "--alloc", f"floor-top={BIN}/floor-top.so",
                "--hakmem", f"{REPO}/build/default/libhakmem.so", *flags]

    def test_defaults(self):
        self.assertEqual(self.run_py_args(), self.expected(
            "--bench", "fixed,mixed,larson", "--out", "build/default/bench/floor"))

    def test_quick_bench_rounds(self):
        self.assertEqual(self.run_py_args("QUICK=1", "BENCH=fixed64,larson2",
                                          "ROUNDS=2"),
                         self.expected("--out", "build/default/bench/floor",
                                       "--quick", "--bench", "fixed64,larson2",
                                       "--rounds", "2"))
        self.assertEqual(self.run_py_args("QUICK=0"), self.run_py_args())


@unittest.skipUnless(os.path.isfile(os.path.join(BIN, "appmix")),
                     "no workload binaries in build/bench (make bench-bins)")
class WorkloadArgsTest(unittest.TestCase):
    """Counts too big for memory: a message and exit 1 or 2, never a block
    whose size wrapped around and was written past its end."""
    HUGE = str(2**61 + 1)  # * 8 bytes wraps to 8

    def check(self, argv, status, message):
        def limit():  # however wrong, a run must not take the machine's memory
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        p = subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]],
                           capture_output=True, text=True, preexec_fn=limit)
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (status, "", message + "\n"))

    def test_counts_whose_bytes_overflow(self):
        wrap = f"malloc(0 + {self.HUGE} * 8) overflows"
        self.check(("fixed", "10", "64", self.HUGE), 1, wrap)
        self.check(("mixed", "10", self.HUGE), 1, wrap)
        self.check(("phases", self.HUGE), 1, wrap)
        self.check(("large", "1", self.HUGE), 1, wrap)
        self.check(("appmix", "1", self.HUGE), 1, wrap)
        self.check(("mid_mt", "2", "1", self.HUGE), 1, wrap)
        self.check(("mid_mt", self.HUGE, "1"), 1,
                   f"malloc(0 + {self.HUGE} * 88) overflows")
        self.check(("larson", "2", "1", str(2**61 - 1)), 1,
                   f"malloc(16 + {2**61 - 1} * 8) overflows")
        self.check(("larson", "2", "1", self.HUGE), 2, "larson: WORKSET too large")

    def test_out_of_range_is_a_usage_error(self):
        # strtol's LONG_MAX for a number too big was taken as the count
        self.check(("mixed", "10", "1" + "0" * 20), 2,
                   f"usage: {os.path.join(BIN, 'mixed')} ITER WORKSET [MAXSIZE]")


if __name__ == "__main__":
    unittest.main()
