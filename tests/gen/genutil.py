"""Shared helpers for the generator tests (tests/gen/test_*.py).

Run from the repository root:  python3 -m unittest discover -s tests/gen
The generator runs as a subprocess under the interpreter running the tests
(sys.executable), so the tests exercise whichever python3 runs them.
"""
import contextlib
import importlib.machinery
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # keep gen/ free of __pycache__

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(REPO, "gen")
HAKGEN = os.path.join(GEN, "hakgen")
DEFAULT_SPEC = os.path.join(REPO, "spec", "classes.yaml")
VARIANTS = os.path.join(REPO, "spec", "variants")
OUTPUTS = ("hak_front.h", "hak_spec.h", "hak_tables.c", "spec.json")

if GEN not in sys.path:
    sys.path.insert(0, GEN)

# A small full spec; the line numbers on the right are what error tests expect.
SMALL = """\
schema: 1
name: small
superslab:
  bytes: 2MiB
  slab_bytes: 64KiB
tiny:
  tiers: [ring, sll, slab]
  classes:
    - { size: 16, ring: 128, sll: 256, refill: 64 }
    - { size: 32, ring: 128, sll: 256, refill: 64 }
    - { size: 64, ring: 128, sll: 256, refill: 64 }
    - { size: 128, ring: 64, sll: 128, refill: 32 }
    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }
mid:
  tiers: [ring, slab]
  ring: 16
  refill: 8
  classes: [384, 512, 1024, 2048]
large:
  cache_bytes: 64MiB
options:
  metrics: false
  free_check: guarded
  decay_ms: 1000
"""
#   1 schema   2 name   4 bytes   5 slab_bytes   7 tiny.tiers
#   9..13 tiny.classes[0..4]   15 mid.tiers  16 mid.ring  17 mid.refill  18 mid.classes
#   20 cache_bytes   22 metrics   23 free_check   24 decay_ms


def edit(text, old, new, count=1):
    """`text` with `old` replaced by `new`; `old` must occur exactly `count` times."""
    found = text.count(old)
    if found != count:
        raise AssertionError(f"{old!r} occurs {found} times, expected {count}")
    return text.replace(old, new)


def run_hakgen(*args, cwd=None, env=None):
    """Run gen/hakgen under this interpreter; return the CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, HAKGEN, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def load_hakgen():
    """gen/hakgen as a module (it has no .py suffix), for calling main() in-process."""
    loader = importlib.machinery.SourceFileLoader("hakgen", HAKGEN)
    spec = importlib.util.spec_from_loader("hakgen", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def hakgen_inprocess(module, *args):
    """(exit status, stdout, stderr) of hakgen's main(args) run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = module.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def read_outputs(outdir):
    out = {}
    for name in OUTPUTS:
        with open(os.path.join(outdir, name), encoding="utf-8", newline="") as f:
            out[name] = f.read()
    return out


class TempDirTest(unittest.TestCase):
    """A test with a fresh temporary directory, self.tmp, removed afterwards."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hakgen-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def hakgen(self, *args, env=None):
        """hakgen with the temporary directory as its working directory."""
        return run_hakgen(*args, cwd=self.tmp, env=env)

    def assertOk(self, proc):
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stderr, "")
        return proc.stdout

    def assertSpecError(self, proc, line):
        """Exit status 2, exactly one line `line` on stderr, nothing on stdout."""
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(proc.stderr, line + "\n")
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(proc.stdout, "")
