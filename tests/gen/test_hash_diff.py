"""The spec hash changes when, and only when, the resolved spec changes;
`gen/hakgen diff` prints exactly the resolved fields that differ."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import REPO, SMALL, TempDirTest, edit  # noqa: E402

import resolve  # noqa: E402
from overlay import load_spec  # noqa: E402

# SMALL written differently: sections and keys reordered, other comments, flow
# vs block style, units spelled out, defaults and unused fields made explicit
# (the 256 B class has no ring tier, so its ring: 32 never mattered).
SMALL_REWRITTEN = """\
# the same spec, written another way
options: { decay_ms: 1000, free_check: guarded, metrics: false }
large: { cache_bytes: 67108864 }   # 64MiB
mid:
  classes:
    - 384
    - 512
    - 1024
    - 2048
  refill: 8
  ring: 16
  tiers: [ring, slab]
tiny:
  classes:
    - { size: 16, refill: 64, sll: 256, ring: 128 }
    - { size: 32, ring: 128, sll: 256, refill: 64, prewarm: 0 }
    - size: 64
      ring: 128
      sll: 256
      refill: 64
    - { size: 128, ring: 64, sll: 128, refill: 32, tiers: [ring, sll, slab] }
    - { size: 256, sll: 64, refill: 16, tiers: [sll, slab] }
  tiers: [ring, sll, slab]
superslab: { slab_bytes: 65536, bytes: 2048KiB }
name: small
schema: 1
"""


class HashTest(TempDirTest):
    def spec_hash(self, text, name="s.yaml"):
        return resolve.spec_hash(resolve.resolve(load_spec(self.write(name, text))))

    def test_cli_prints_the_hash(self):
        self.write("s.yaml", SMALL)
        out = self.assertOk(self.hakgen("validate", "s.yaml"))
        self.assertEqual(out, f"s.yaml: ok: small {self.spec_hash(SMALL)}\n")
        self.assertRegex(out, r" [0-9a-f]{16}\n$")

    def test_same_resolved_spec_same_hash(self):
        h = self.spec_hash(SMALL)
        for label, text in [
            ("rewritten", SMALL_REWRITTEN),
            ("comments", "# a comment\n" + SMALL.replace("\n", "   # and another\n")),
            ("65536 for 64KiB", edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 65536")),
            ("2097152 for 2MiB", edit(SMALL, "bytes: 2MiB", "bytes: 2097152")),
            ("explicit default", edit(SMALL, "refill: 32 }", "refill: 32, prewarm: 0 }")),
            ("explicit huge_pages default", edit(SMALL, "  slab_bytes: 64KiB\n",
                                                 "  slab_bytes: 64KiB\n  huge_pages: false\n")),
            ("unused ring", edit(SMALL, "{ size: 256, ring: 32,", "{ size: 256, ring: 4000,")),
            ("no-op overlay", None),
        ]:
            with self.subTest(label):
                if text is None:
                    self.write("small.yaml", SMALL)
                    text = "base: small.yaml\nname: small\ntiny:\n  classes:\n    64: { ring: 128 }\n"
                self.assertEqual(self.spec_hash(text), h)

    def test_changed_value_changes_hash(self):
        h = self.spec_hash(SMALL)
        seen = {h}
        for old, new in [
            ("name: small", "name: small2"),
            ("{ size: 64, ring: 128", "{ size: 64, ring: 127"),
            ("{ size: 64, ring: 128, sll: 256, refill: 64 }", "{ size: 64, ring: 128, sll: 256, refill: 63 }"),
            ("refill: 32 }", "refill: 32, prewarm: 1 }"),
            ("tiers: [sll, slab]", "tiers: [ring, sll, slab]"),
            ("  tiers: [ring, sll, slab]", "  tiers: [sll, ring, slab]"),
            ("bytes: 2MiB", "bytes: 4MiB"),
            ("slab_bytes: 64KiB", "slab_bytes: 32KiB"),
            ("slab_bytes: 64KiB", "slab_bytes: 64KiB\n  huge_pages: true"),
            ("[384, 512, 1024, 2048]", "[384, 512, 1024, 2048, 4096]"),
            ("  ring: 16\n", "  ring: 17\n"),
            ("cache_bytes: 64MiB", "cache_bytes: 32MiB"),
            ("metrics: false", "metrics: true"),
            ("free_check: guarded", "free_check: trusted"),
            ("decay_ms: 1000", "decay_ms: 999"),
        ]:
            with self.subTest(new):
                changed = self.spec_hash(edit(SMALL, old, new))
                self.assertNotIn(changed, seen)
                seen.add(changed)

    def test_hash_is_sha256_of_canonical_json(self):
        import hashlib
        r = resolve.resolve(load_spec(self.write("s.yaml", SMALL)))
        self.assertEqual(resolve.spec_hash(r),
                         hashlib.sha256(resolve.canonical_json(r).encode()).hexdigest()[:16])


class DiffTest(TempDirTest):
    def diff(self, a_text, b_text):
        self.write("a.yaml", a_text)
        self.write("b.yaml", b_text)
        return self.assertOk(self.hakgen("diff", "a.yaml", "b.yaml"))

    def test_identical(self):
        self.assertEqual(self.diff(SMALL, SMALL_REWRITTEN), "")

    def test_one_field(self):
        self.assertEqual(self.diff(SMALL, edit(SMALL, "{ size: 64, ring: 128", "{ size: 64, ring: 64")),
                         "tiny.classes[size=64].ring: 128 -> 64\n")

    def test_many_fields(self):
        self.write("small.yaml", SMALL)
        over = ("base: small.yaml\nname: many\n"
                "superslab: { bytes: 4MiB }\n"
                "tiny:\n  classes:\n    32: null\n    48: { ring: 8, refill: 8 }\n"
                "    256: { tiers: [ring, sll, slab] }\n"
                "mid: { classes: [384, 1024] }\n"
                "options: { free_check: trusted }\n")
        self.assertEqual(self.diff(SMALL, over), """\
mid.classes: [384, 512, 1024, 2048] -> [384, 1024]
name: small -> many
options.free_check: guarded -> trusted
superslab.bytes: 2097152 -> 4194304
tiny.classes[size=32].prewarm: 0 -> (absent)
tiny.classes[size=32].refill: 64 -> (absent)
tiny.classes[size=32].ring: 128 -> (absent)
tiny.classes[size=32].sll: 256 -> (absent)
tiny.classes[size=32].tiers: [ring, sll, slab] -> (absent)
tiny.classes[size=32].transfer: 0 -> (absent)
tiny.classes[size=48].prewarm: (absent) -> 0
tiny.classes[size=48].refill: (absent) -> 8
tiny.classes[size=48].ring: (absent) -> 8
tiny.classes[size=48].sll: (absent) -> 128
tiny.classes[size=48].tiers: (absent) -> [ring, sll, slab]
tiny.classes[size=48].transfer: (absent) -> 0
tiny.classes[size=256].ring: 0 -> 32
tiny.classes[size=256].tiers: [sll, slab] -> [ring, sll, slab]
""")

    def test_classes_in_size_order(self):
        b = re.sub(r"ring: (\d+),", lambda m: f"ring: {int(m.group(1)) // 2},", SMALL)
        b = re.sub(r"refill: (\d+)", lambda m: f"refill: {int(m.group(1)) // 2}", b)
        keys = [line.split(":")[0] for line in self.diff(SMALL, b).splitlines()]
        self.assertEqual(keys, ["mid.refill",
                                "tiny.classes[size=16].refill", "tiny.classes[size=16].ring",
                                "tiny.classes[size=32].refill", "tiny.classes[size=32].ring",
                                "tiny.classes[size=64].refill", "tiny.classes[size=64].ring",
                                "tiny.classes[size=128].refill", "tiny.classes[size=128].ring",
                                "tiny.classes[size=256].refill"])

    def test_invalid_side(self):
        self.write("a.yaml", SMALL)
        self.write("b.yaml", edit(SMALL, "metrics: false", "metrics: maybe"))
        self.assertSpecError(self.hakgen("diff", "a.yaml", "b.yaml"),
                             "b.yaml:22: options.metrics: expected true or false, got 'maybe'")


class ClosedPipeTest(TempDirTest):
    def test_reader_gone(self):
        """`hakgen diff A B | head`: no traceback when the reader goes away."""
        import subprocess
        self.write("a.yaml", SMALL)
        self.write("b.yaml", edit(SMALL, "metrics: false", "metrics: true"))
        for unbuffered in ("1", ""):
            env = dict(os.environ, PYTHONUNBUFFERED=unbuffered, PYTHONDONTWRITEBYTECODE="1")
            # the read end is closed before hakgen starts, so its first write
            # gets EPIPE however fast it runs
            read_end, write_end = os.pipe()
            os.close(read_end)
            try:
                proc = subprocess.Popen([sys.executable, os.path.join(REPO, "gen", "hakgen"),
                                         "diff", "a.yaml", "b.yaml"], cwd=self.tmp, env=env,
                                        stdout=write_end, stderr=subprocess.PIPE, text=True)
            finally:
                os.close(write_end)
            err = proc.stderr.read()
            proc.stderr.close()
            self.assertEqual((proc.wait(), err), (1, ""))
