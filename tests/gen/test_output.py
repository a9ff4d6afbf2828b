"""The generated files: deterministic, rewritten only when changed, banner and
spec.json provenance, one spec field -> exactly its constants, the size->class table."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import (DEFAULT_SPEC, OUTPUTS, REPO, SMALL, VARIANTS, TempDirTest,  # noqa: E402
                     edit, read_outputs, run_hakgen)

import render  # noqa: E402
import resolve  # noqa: E402
from overlay import load_spec  # noqa: E402

C_FILES = ("hak_front.h", "hak_spec.h", "hak_tables.c")


def _default_text():
    with open(DEFAULT_SPEC, encoding="utf-8") as f:
        return f.read()


class DeterminismTest(TempDirTest):
    def generate(self, outdir, env=None, spec="spec/classes.yaml"):
        proc = run_hakgen("generate", spec, os.path.join(self.tmp, outdir), cwd=REPO, env=env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def test_twice_is_identical(self):
        self.generate("a")
        self.generate("b")
        self.assertEqual(read_outputs(os.path.join(self.tmp, "a")), read_outputs(os.path.join(self.tmp, "b")))

    def test_hash_seed_does_not_matter(self):
        self.generate("a", env={"PYTHONHASHSEED": "0"})
        self.generate("b", env={"PYTHONHASHSEED": "12345"})
        a, b = read_outputs(os.path.join(self.tmp, "a")), read_outputs(os.path.join(self.tmp, "b"))
        for name in OUTPUTS:
            self.assertEqual(a[name].encode(), b[name].encode(), name)

    def test_output_is_where_independent(self):
        # same spec text in two different directories (outside the repo): same bytes
        self.write("x/classes.yaml", _default_text())
        self.write("y/classes.yaml", _default_text())
        self.assertOk(self.hakgen("generate", "x/classes.yaml", "ox"))
        self.assertOk(run_hakgen("generate", os.path.join(self.tmp, "y/classes.yaml"),
                                 os.path.join(self.tmp, "oy"), cwd=REPO))
        self.assertEqual(read_outputs(os.path.join(self.tmp, "ox")), read_outputs(os.path.join(self.tmp, "oy")))

    def test_unchanged_input_rewrites_nothing(self):
        out = os.path.join(self.tmp, "out")
        first = self.generate("out").stdout
        self.assertEqual(first.splitlines(),
                         [f"hakgen: wrote {os.path.join(out, n)}" for n in sorted(OUTPUTS)])
        old = 1_000_000_000  # 2001: any rewrite would move the mtime to now
        for name in OUTPUTS:
            os.utime(os.path.join(out, name), ns=(old, old))
        again = self.generate("out")
        self.assertEqual(again.stdout, "")
        for name in OUTPUTS:
            self.assertEqual(os.stat(os.path.join(out, name)).st_mtime_ns, old, name)
        self.assertEqual(sorted(os.listdir(out)), sorted(OUTPUTS))  # no .tmp left behind

    def test_changed_input_rewrites_and_lists_files(self):
        self.write("s.yaml", SMALL)
        self.assertOk(self.hakgen("generate", "s.yaml", "out"))
        self.write("s.yaml", edit(SMALL, "decay_ms: 1000", "decay_ms: 500"))
        # every file carries the hash, so all four change
        self.assertEqual(self.assertOk(self.hakgen("generate", "s.yaml", "out")).splitlines(),
                         [f"hakgen: wrote out/{n}" for n in sorted(OUTPUTS)])


class OutputErrorTest(TempDirTest):
    """A generated file that cannot be written: one line PATH: cannot write: reason,
    exit 2, and the output directory as it was (no file of the new spec, no .tmp)."""

    def snapshot(self, outdir):
        return {n: os.stat(os.path.join(outdir, n)).st_mtime_ns for n in sorted(os.listdir(outdir))}

    def test_failed_write_changes_nothing(self):
        self.write("s.yaml", SMALL)
        self.assertOk(self.hakgen("generate", "s.yaml", "out"))
        before, old = read_outputs(os.path.join(self.tmp, "out")), self.snapshot(os.path.join(self.tmp, "out"))
        # the third file's scratch copy cannot be written: as on a full disk
        os.symlink("/dev/full", os.path.join(self.tmp, "out", "hak_tables.c.tmp"))
        self.write("s.yaml", edit(SMALL, "free_check: guarded", "free_check: trusted"))
        self.assertSpecError(self.hakgen("generate", "s.yaml", "out"),
                             "out/hak_tables.c: cannot write: No space left on device")
        self.assertEqual(read_outputs(os.path.join(self.tmp, "out")), before)
        self.assertEqual(self.snapshot(os.path.join(self.tmp, "out")), old)  # .tmp removed too
        self.assertOk(self.hakgen("generate", "s.yaml", "out"))  # and it works once it can
        self.assertIn("trusted", read_outputs(os.path.join(self.tmp, "out"))["spec.json"])

    def test_output_paths_that_cannot_be_written(self):
        self.write("s.yaml", SMALL)
        self.write("afile", "keep\n")
        self.assertSpecError(self.hakgen("generate", "s.yaml", "afile"),
                             "afile: cannot write: it is not a directory")
        self.assertSpecError(self.hakgen("generate", "s.yaml", "afile/out"),
                             "afile/out: cannot write: Not a directory")
        os.makedirs(os.path.join(self.tmp, "o", "hak_spec.h"))
        self.assertSpecError(self.hakgen("generate", "s.yaml", "o"),
                             "o/hak_spec.h: cannot write: it is a directory")
        self.assertEqual(os.listdir(os.path.join(self.tmp, "o")), ["hak_spec.h"])
        with open(os.path.join(self.tmp, "afile"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "keep\n")

    def test_unreadable_old_output_is_overwritten(self):
        self.write("s.yaml", SMALL)
        os.makedirs(os.path.join(self.tmp, "out"))
        with open(os.path.join(self.tmp, "out", "hak_spec.h"), "wb") as f:
            f.write(b"\xff\xfe not UTF-8")
        self.assertOk(self.hakgen("generate", "s.yaml", "out"))
        self.assertIn("#define HAK_SPEC_NAME", read_outputs(os.path.join(self.tmp, "out"))["hak_spec.h"])


class ProvenanceTest(TempDirTest):
    def check_banner(self, spec_rel, make_cmd):
        out = os.path.join(self.tmp, "out")
        self.assertEqual(run_hakgen("generate", spec_rel, out, cwd=REPO).returncode, 0)
        ok = run_hakgen("validate", spec_rel, cwd=REPO).stdout
        name, digest = re.fullmatch(r".*: ok: (\S+) ([0-9a-f]{16})\n", ok).groups()
        files = read_outputs(out)
        banner = ("/*\n"
                  f" * Generated by gen/hakgen from {spec_rel} - do not edit.\n"
                  f" * Spec \"{name}\", hash {digest}.  To regenerate run: {make_cmd}\n"
                  " */\n")
        for fname in C_FILES:
            self.assertTrue(files[fname].startswith(banner), f"{fname}:\n{files[fname][:300]}")
        self.assertIn(f'#define HAK_SPEC_HASH "{digest}"\n', files["hak_spec.h"])
        self.assertIn(f'#define HAK_SPEC_NAME "{name}"\n', files["hak_spec.h"])
        resolved = run_hakgen("resolve", spec_rel, cwd=REPO).stdout
        self.assertEqual(files["spec.json"], resolved)
        self.assertEqual(resolve.spec_hash(json.loads(resolved)), digest)
        self.assertEqual(digest, __import__("hashlib").sha256(resolved.encode()).hexdigest()[:16])
        # the tables carry the same JSON as a C string
        cstr = render._env().filters["cstr"]
        self.assertIn(f"const char hak_spec_json[] = {cstr(resolved)};\n", files["hak_tables.c"])

    def test_banner_default(self):
        self.check_banner("spec/classes.yaml", "make")

    def test_banner_variants(self):
        names = sorted(f for f in os.listdir(VARIANTS) if f.endswith(".yaml"))
        self.assertIn("ring64.yaml", names)
        for fname in names:
            with self.subTest(fname):
                self.check_banner(f"spec/variants/{fname}", f"make VARIANT={fname[:-5]}")

    def test_banner_comment_safe_for_any_path(self):
        # a spec under spec/try*/: the banner's `*/` ended its comment there, and gcc failed
        resolved = resolve.resolve(load_spec(DEFAULT_SPEC))
        for rel, shown, make_cmd in (
                ("spec/try*/v.yaml", "spec/try*\\/v.yaml", "make VARIANT=v"),
                ("spec/a/*b/v*.yaml", "spec/a/\\*b/v*.yaml", "make VARIANT=v*"),
                ("spec/x\n*/y/v.yaml", "spec/x\\n*\\/y/v.yaml", "make VARIANT=v")):
            files = render.render_all(resolved, os.path.join(render.ROOT, rel))
            for fname in C_FILES:
                with self.subTest(rel=rel, fname=fname):
                    text = files[fname]
                    banner = text[:text.index("*/") + 3]  # the first `*/` ends the banner
                    self.assertEqual(banner, "/*\n"
                                     f" * Generated by gen/hakgen from {shown} - do not edit.\n"
                                     f" * Spec \"default\", hash {resolve.spec_hash(resolved)}.  "
                                     f"To regenerate run: {make_cmd}\n */\n")

    def test_file_name_not_utf8(self):
        # the banner names the file: a byte that is not UTF-8 was a UnicodeEncodeError
        name = os.fsdecode(b"x\xff.yaml")
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            self.write(name, f.read())
        self.assertOk(self.hakgen("generate", name, "out"))
        files = read_outputs(os.path.join(self.tmp, "out"))
        self.assertTrue(files["hak_spec.h"].startswith(
            "/*\n * Generated by gen/hakgen from x\\udcff.yaml - do not edit.\n"),
            files["hak_spec.h"][:200])

    def test_spec_json_is_canonical(self):
        text = run_hakgen("resolve", "spec/classes.yaml", cwd=REPO).stdout
        self.assertEqual(text, json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n")


class OneFieldEditTest(TempDirTest):
    """In the ring spec (spec/variants/ring.yaml on the default), the ring of
    the 64-byte class (class 3) 256 -> 128 changes exactly its constants."""

    def test_ring_of_class_3(self):
        with open(os.path.join(VARIANTS, "ring.yaml"), encoding="utf-8") as f:
            before = edit(f.read(), "base: ../classes.yaml\n", "base: classes.yaml\n")
        after = edit(before, "{ size: 64,   refill: 64 }", "{ size: 64,   refill: 64, ring: 128 }")
        for d, text in (("a", before), ("b", after)):
            self.write(f"{d}/classes.yaml", _default_text())
            self.write(f"{d}/ring.yaml", text)
        self.assertOk(self.hakgen("generate", "a/ring.yaml", "oa"))
        self.assertOk(self.hakgen("generate", "b/ring.yaml", "ob"))
        a, b = read_outputs(os.path.join(self.tmp, "oa")), read_outputs(os.path.join(self.tmp, "ob"))
        ha = self.assertOk(self.hakgen("validate", "a/ring.yaml")).split()[-1]
        hb = self.assertOk(self.hakgen("validate", "b/ring.yaml")).split()[-1]
        self.assertNotEqual(ha, hb)
        self.assertEqual(self.assertOk(self.hakgen("diff", "a/ring.yaml", "b/ring.yaml")),
                         "tiny.classes[size=64].ring: 256 -> 128\n")

        def expect(text, *subs):
            """text with the hash swapped and each (old, new, count) applied."""
            self.assertEqual(text.count(ha), {"spec.json": 0, "hak_spec.h": 2, "hak_tables.c": 2}.get(name, 1), name)
            text = text.replace(ha, hb)
            for old, new in subs:
                text = edit(text, old, new)
            return text

        name = "hak_spec.h"
        # the stride is the largest bin's: class 4's bin stays where it was,
        # 1024 bytes more padding before it
        pad = int(re.search(r"char pad_c4\[(\d+)\];", a[name]).group(1))
        self.assertEqual(b[name], expect(a[name], (
            "        void *ring[256];\n    } __attribute__((aligned(64))) c3;  /* tiny 64 B */\n",
            "        void *ring[128];\n    } __attribute__((aligned(64))) c3;  /* tiny 64 B */\n"),
            (f"char pad_c4[{pad}];", f"char pad_c4[{pad + 1024}];")))

        name = "hak_front.h"
        start = a[name].index("HAK_INLINE void hak_free_c3(void *p)")
        end = a[name].index("HAK_INLINE", start + 1)
        free_c3 = a[name][start:end]
        self.assertEqual(free_c3.count("s - 1 < 256u"), 1)
        self.assertEqual(free_c3.count("hak_free_keyed(p)"), 1)  # its one cache tier checks the key
        self.assertEqual(b[name], expect(a[name], (free_c3, free_c3.replace("s - 1 < 256u", "s - 1 < 128u"))))

        name = "hak_tables.c"
        row = re.search(r"^ \*\s+3  tiny\s+64 .*\n", a[name], re.M).group(0)
        cstr = render._env().filters["cstr"]
        # 128 slots fewer, and no bin moves (the layout checks stay as they were)
        # hak_fast.cap: code 0, then class 0, 1, 2, 3 (ring 256 -> 128), ...
        caps = re.search(r"^    \.cap = \{.*\},$", a[name], re.M).group(0)
        self.assertTrue(caps.startswith("    .cap = {0, 256, 256, 256, 256, "), caps)
        caps_b = caps.replace("{0, 256, 256, 256, 256, ", "{0, 256, 256, 256, 128, ")
        self.assertEqual(b[name], expect(
            a[name],
            (row, row.replace("    256     0", "    128     0")),
            ("{ .size = 64, .stride = 64, .span_bytes = 65536, .blocks = 1024, .ring = 256,",
             "{ .size = 64, .stride = 64, .span_bytes = 65536, .blocks = 1024, .ring = 128,"),
            (caps, caps_b),
            (cstr(a["spec.json"]), cstr(b["spec.json"]))))

        name = "spec.json"
        resolved = json.loads(a[name])
        self.assertEqual(resolved["tiny"]["classes"][3]["size"], 64)
        resolved["tiny"]["classes"][3]["ring"] = 128
        self.assertNotIn(ha, a[name])  # the hash covers spec.json; it is not inside it
        self.assertEqual(b[name], resolve.canonical_json(resolved))
        self.assertEqual(hb, resolve.spec_hash(resolved))


class TableFrontTest(TempDirTest):
    """options.dispatch: table serves each class's first cache tier, a ring or a
    list, through hak_fast's arrays and hak_size_bin; its fronts test which kind a
    class has only when the spec has classes of both."""

    def generate(self, text):
        self.write("s.yaml", text)
        self.assertOk(self.hakgen("generate", "s.yaml", "out"))
        return read_outputs(os.path.join(self.tmp, "out"))

    @staticmethod
    def rows(tables_c):
        """(cap, first_sll) of each class in hak_fast (after code 0's)."""
        body = tables_c.split("const struct hak_fast_table hak_fast = {")[1].split("\n};")[0]

        def field(name):
            return re.search(r"\." + name + r" = \{(.*?)\}", body, re.S).group(1)
        return list(zip(re.findall(r"\d+", field("cap")), re.findall(r"\d+", field("first_sll"))))[1:]

    @staticmethod
    def size_bins(tables_c):
        body = tables_c.split("hak_size_bin[")[1].split("};")[0]
        return re.findall(r"offsetof\(struct hak_thread_block, (\w+)\)( \+ HAK_BIN_SLL)?,", body)

    def test_rings_only(self):
        out = self.generate(edit(SMALL, "refill: 16, tiers: [sll, slab] }", "refill: 16 }"))
        self.assertEqual(self.rows(out["hak_tables.c"]),
                         [("128", "0"), ("128", "0"), ("128", "0"), ("64", "0"),
                          ("32", "0"), ("16", "0"), ("16", "0"), ("16", "0"),
                          ("16", "0")])
        self.assertNotIn("HAK_BIN_SLL", out["hak_tables.c"])
        self.assertNotIn("first_sll", out["hak_front.h"])
        malloc = out["hak_front.h"].split("HAK_INLINE void *hak_front_malloc")[1].split("\n}\n")[0]
        self.assertIn("t->ring_s", malloc)
        self.assertNotIn("sll_head", malloc)

    def test_both_kinds(self):
        out = self.generate(SMALL)  # class 4 (256 B) starts with its list (capacity 64)
        rows = self.rows(out["hak_tables.c"])
        self.assertEqual(rows[4], ("64", "1"))
        self.assertEqual([r for i, r in enumerate(rows) if r[1] == "1"], [rows[4]])
        bins = self.size_bins(out["hak_tables.c"])
        self.assertEqual(len(bins), 2048 // 16 + 1)
        # sizes 129..256 B, (n + 15) >> 4 = 9..16: class 4's bin with the list bit; no other entry has it
        self.assertEqual([i for i, (_, sll) in enumerate(bins) if sll], list(range(9, 17)))
        self.assertEqual({b for b, _ in bins[9:17]}, {"c4"})
        front = out["hak_front.h"]
        self.assertEqual(front.count("if (o & HAK_BIN_SLL) {"), 1)
        self.assertEqual(front.count("if (f->first_sll[code]) {"), 1)

    def assertNoKindTest(self, out):
        """Neither front tests which kind a class has; returns hak_front.h."""
        self.assertNotIn("HAK_BIN_SLL", out["hak_tables.c"])
        self.assertNotIn("first_sll", out["hak_front.h"])
        return out["hak_front.h"]

    # SMALL with every tiny class starting with its list
    TINY_LISTS_FIRST = edit(SMALL, "tiny:\n  tiers: [ring, sll, slab]", "tiny:\n  tiers: [sll, ring, slab]")

    def test_lists_only(self):
        out = self.generate(edit(self.TINY_LISTS_FIRST, "[384, 512, 1024, 2048]", "[]"))
        self.assertEqual(self.rows(out["hak_tables.c"]),
                         [("256", "1"), ("256", "1"), ("256", "1"), ("128", "1"),
                          ("64", "1")])
        front = self.assertNoKindTest(out)
        malloc = front.split("HAK_INLINE void *hak_front_malloc")[1].split("\n}\n")[0]
        self.assertIn("t->sll_head = HAK_BLOCK(p)->next;", malloc)
        self.assertNotIn("ring_s", malloc)

    def test_transfer_in_class_info(self):
        """The runtime reads each class's transfer capacity from hak_class_info."""
        out = self.generate(edit(SMALL, "  tiers: [ring, slab]\n  ring: 16\n",
                                 "  tiers: [ring, slab]\n  ring: 16\n  transfer: 3\n"))
        self.assertEqual(re.findall(r"\.transfer = (\d+),", out["hak_tables.c"]), ["0"] * 5 + ["3"] * 4)

    def test_lists_only_with_mid_classes(self):
        """Mid classes may start with a list too (mid.sll): then every class is
        list-first and the fronts have no kind test, mid classes kept."""
        out = self.generate(edit(self.TINY_LISTS_FIRST, "  tiers: [ring, slab]\n  ring: 16\n",
                                 "  tiers: [sll, ring, slab]\n  ring: 16\n  sll: 32\n"))
        rows = self.rows(out["hak_tables.c"])
        self.assertEqual(rows[5:], [("32", "1"), ("32", "1"), ("32", "1"),
                                    ("32", "1")])
        self.assertIn(".tiers = HAK_TIER_RING | HAK_TIER_SLL, .ring_first = 0 }", out["hak_tables.c"])
        front = self.assertNoKindTest(out)
        free = front.split("HAK_INLINE void hak_front_free(void *p)")[1].split("\n}\n")[0]
        self.assertIn("t->sll_head = p;", free)
        self.assertNotIn("ring_s", free)
        spec = json.loads(out["spec.json"])
        self.assertEqual((spec["mid"]["sll"], spec["mid"]["ring"], spec["mid"]["refill"]), (32, 16, 8))

    def test_mid_ring_only_with_a_ring(self):
        """mid.ring is needed only where mid's tiers have a ring: lists alone
        need none (it resolves to 0), and a ring left out gets the default 64,
        as a tiny class's does."""
        lists = self.generate(edit(SMALL, "  tiers: [ring, slab]\n  ring: 16\n", "  tiers: [sll, slab]\n"))
        spec = json.loads(lists["spec.json"])
        self.assertEqual((spec["mid"]["tiers"], spec["mid"]["sll"], spec["mid"]["ring"]),
                         (["sll", "slab"], 128, 0))
        ring = self.generate(edit(SMALL, "  ring: 16\n  refill: 8\n", "  refill: 8\n"))
        self.assertEqual(json.loads(ring["spec.json"])["mid"]["ring"], 64)


class MidCacheBytesTest(TempDirTest):
    """mid.class_cache_bytes: a mid class whose full cache tier would hold more bytes
    keeps as many blocks as fit (at least one), its refill lowered in proportion."""

    generate = TableFrontTest.generate  # the outputs of a spec's text

    @staticmethod
    def mid_rows(tables_c):
        """(size, ring, sll, refill, transfer) of each mid class in hak_class_info."""
        return [tuple(int(v) for v in m) for m in re.findall(
            r"\{ \.size = (\d+), .*?\.ring = (\d+), \.sll = (\d+),\s+\.refill = (\d+), "
            r"\.prewarm = 0, \.transfer = (\d+),", tables_c, re.S) if int(m[0]) > 256]

    def test_ring_lowered_by_bytes(self):
        # ring 16, refill 8, transfer 3: 16 KiB a class holds 16 of 384, 512 and 1024 B
        # (16 KiB exactly), 8 of 2048 B with a refill of 4; 4 KiB: 10, 8, 4 and 2 blocks
        text = edit(SMALL, "  refill: 8\n", "  refill: 8\n  transfer: 3\n  class_cache_bytes: 16KiB\n")
        self.assertEqual(self.mid_rows(self.generate(text)["hak_tables.c"]),
                         [(384, 16, 0, 8, 3), (512, 16, 0, 8, 3), (1024, 16, 0, 8, 3),
                          (2048, 8, 0, 4, 3)])
        out = self.generate(edit(text, "16KiB", "4KiB"))
        self.assertEqual(self.mid_rows(out["hak_tables.c"]),
                         [(384, 10, 0, 5, 3), (512, 8, 0, 4, 3), (1024, 4, 0, 2, 3),
                          (2048, 2, 0, 1, 3)])
        self.assertEqual(json.loads(out["spec.json"])["mid"]["class_cache_bytes"], 4096)
        # the fronts test a ring against each class's own capacity (hak_fast.cap)
        caps = re.search(r"^    \.cap = \{(.*)\},$", out["hak_tables.c"], re.M).group(1)
        self.assertEqual([int(c) for c in re.findall(r"\d+", caps)][-4:], [10, 8, 4, 2])

    def test_at_least_one_block_and_lists(self):
        # a list tier: a bound below the class's size still leaves one block, refill 1
        text = edit(SMALL, "  tiers: [ring, slab]\n  ring: 16\n  refill: 8\n",
                    "  tiers: [sll, slab]\n  sll: 64\n  refill: 16\n  class_cache_bytes: 1000\n")
        self.assertEqual(self.mid_rows(self.generate(text)["hak_tables.c"]),
                         [(384, 0, 2, 1, 0), (512, 0, 1, 1, 0), (1024, 0, 1, 1, 0),
                          (2048, 0, 1, 1, 0)])

    def test_default_spec(self):
        # classes on to 256 KiB, as tcmalloc's; 2 MiB a class: the classes up to 32 KiB
        # keep the list of 64 and the refill of 16, the larger ones fewer
        m = resolve.model(resolve.resolve(load_spec(DEFAULT_SPEC)), "spec/classes.yaml")
        mid = {c["size"]: (c["sll"], c["refill"], c["transfer"]) for c in m["classes"]
               if c["kind"] == "mid"}
        self.assertEqual(max(mid), 262144)
        self.assertTrue(all(v == (64, 16, 4) for size, v in mid.items() if size <= 32768))
        self.assertEqual([mid[s] for s in (40960, 65536, 131072, 262144)],
                         [(51, 12, 4), (32, 8, 4), (16, 4, 4), (8, 2, 4)])

    def test_no_bound(self):
        # 0, as when it is left out: every mid class has mid's caches
        for extra in ("", "  class_cache_bytes: 0\n"):
            with self.subTest(extra):
                out = self.generate(edit(SMALL, "  refill: 8\n", "  refill: 8\n" + extra))
                self.assertEqual(self.mid_rows(out["hak_tables.c"]),
                                 [(size, 16, 0, 8, 0) for size in (384, 512, 1024, 2048)])
                self.assertEqual(json.loads(out["spec.json"])["mid"]["class_cache_bytes"], 0)


class BinPlacementTest(TempDirTest):
    """Bins in struct hak_thread_block sit where no block of a class sized in
    multiples of 128 starts within a page (4K aliasing): at multiples of 128
    in a block that is at 64 mod 128 in memory.  With the table dispatch each
    is a whole number of strides into the block, the stride a lea and a shift
    to multiply by; with the switch dispatch they are packed, padded only
    where needed.  hak_tables.c's static asserts hold the compiler to these
    offsets."""

    def check_spec(self, path):
        m = resolve.model(resolve.resolve(load_spec(path)), path)
        starts = set()  # page offsets where a block of such a class can start
        for c in m["classes"]:
            if c["size"] % 128 == 0:
                starts |= {k * c["size"] % 4096 for k in range(4096)}
        self.assertTrue(starts)
        stride = m["bin_stride"]
        rows = [dict(c) for c in m["classes"]]
        packed = resolve._place_bins(rows, 0)
        if m["options"]["dispatch"] == "switch":
            self.assertEqual(stride, 0)
        else:  # a stride unless it would more than double the block
            self.assertEqual(stride == 0, resolve._place_bins(rows, resolve._bin_stride(rows)) > 2 * packed)
        if stride:
            # 3, 5 or 9 times a power of two of at least 128, holding the
            # largest bin; 128 itself when every bin fits in it (rings of at
            # most 12 slots, or none)
            largest = max(resolve.BIN_HEADER + 8 * c["ring"] for c in m["classes"])
            self.assertEqual(stride % 128, 0)
            if largest <= 128:
                self.assertEqual(stride, 128)
            else:
                self.assertIn(stride // (stride & -stride), (3, 5, 9))
            self.assertGreaterEqual(stride, largest)
        end = resolve.THREAD_BLOCK_HEAD  # the empty bin, state and heap
        for c in m["classes"]:
            self.assertEqual(c["bin_at"] % 128, 0, c["size"])
            # a mapped block starts 64 bytes into its page (struct hak_thread_slot)
            self.assertNotIn((64 + c["bin_at"]) % 4096, starts)
            self.assertGreaterEqual(c["bin_at"] - c["bin_pad"], end)  # after the previous bin
            if stride:
                self.assertEqual(c["bin_at"], c["code"] * stride)
            else:
                self.assertIn(c["bin_pad"], (0, 64))
                # padded exactly when the natural place was 64 mod 128
                self.assertEqual((c["bin_at"] - c["bin_pad"]) % 128, 64 if c["bin_pad"] else 0)
            end = c["bin_at"] + resolve.BIN_HEADER + 8 * c["ring"]
        return m

    def test_default_and_variants(self):
        self.check_spec(DEFAULT_SPEC)
        for fname in sorted(os.listdir(VARIANTS)):
            if fname.endswith(".yaml"):
                with self.subTest(fname):
                    self.check_spec(os.path.join(VARIANTS, fname))

    def test_strides(self):
        """The smallest stride of the form for the largest ring of the spec; 128 while
        a bin of a header and its ring fits (12 slots)."""
        for ring, stride in ((256, 2304), (128, 1152), (64, 640), (16, 384), (512, 4608),
                             (13, 384), (12, 128), (1, 128)):
            with self.subTest(ring):
                text = re.sub(r"ring: \d+", f"ring: {ring}", SMALL)
                self.write("s.yaml", re.sub(r"refill: \d+", f"refill: {min(ring, 8)}", text))
                m = resolve.model(resolve.resolve(load_spec(os.path.join(self.tmp, "s.yaml"))), "s.yaml")
                self.assertEqual(max(c["ring"] for c in m["classes"]), ring)
                self.assertEqual(m["bin_stride"], stride)

    def test_stride_without_rings(self):
        """No ring anywhere: bare headers 128 apart, as many bytes as packed
        ones, where the smallest stride of the form (384) would have
        tripled the block and left them packed, free loading the offset."""
        text = edit(edit(SMALL, "tiers: [ring, sll, slab]", "tiers: [sll, slab]"),
                    "  tiers: [ring, slab]\n", "  tiers: [sll, slab]\n")
        self.write("s.yaml", text)
        self.assertOk(self.hakgen("generate", "s.yaml", "o"))
        out = read_outputs(os.path.join(self.tmp, "o"))
        m = self.check_spec(os.path.join(self.tmp, "s.yaml"))
        self.assertEqual([c["ring"] for c in m["classes"]], [0] * 9)
        self.assertEqual(m["bin_stride"], 128)
        self.assertEqual([c["bin_at"] for c in m["classes"]], [128 * k for k in range(1, 10)])
        self.assertIn("#define HAK_BIN_STRIDE 128u\n", out["hak_spec.h"])
        free = out["hak_front.h"].split("HAK_INLINE void hak_front_free(void *p)")[1].split("\n}\n")[0]
        self.assertIn("(uintptr_t)code * HAK_BIN_STRIDE", free)
        self.assertNotIn("f->bin_offset[code]", free)

    def test_packed_past_twice_the_block(self):
        """One ring far larger than the rest: strides would more than double
        the block, so bins stay packed and free loads the bin's offset."""
        even = re.sub(r"refill: \d+", "refill: 8", re.sub(r"ring: \d+", "ring: 64", SMALL))
        for big, strided in ((64, True), (1024, False)):
            with self.subTest(big):
                self.write("s.yaml", edit(even, "{ size: 16, ring: 64,", f"{{ size: 16, ring: {big},"))
                self.assertOk(self.hakgen("generate", "s.yaml", "o"))
                out = read_outputs(os.path.join(self.tmp, "o"))
                m = self.check_spec(os.path.join(self.tmp, "s.yaml"))
                self.assertEqual(m["bin_stride"] != 0, strided)
                free = out["hak_front.h"].split("HAK_INLINE void hak_front_free(void *p)")[1].split("\n}\n")[0]
                self.assertEqual("f->bin_offset[code]" in free, not strided)
                self.assertEqual("HAK_BIN_STRIDE" in free, strided)

    def test_generated_layout(self):
        for dispatch in ("table", "switch"):
            with self.subTest(dispatch):
                self.write("s.yaml", SMALL if dispatch == "table" else edit(SMALL, "options:\n", "options:\n  dispatch: switch\n"))
                self.assertOk(self.hakgen("generate", "s.yaml", "o"))
                out = read_outputs(os.path.join(self.tmp, "o"))
                m = self.check_spec(os.path.join(self.tmp, "s.yaml"))
                for c in m["classes"]:
                    self.assertIn(f"offsetof(struct hak_thread_block, c{c['index']}) == {c['bin_at']},",
                                  out["hak_tables.c"])
                    self.assertEqual(out["hak_spec.h"].count(f"char pad_c{c['index']}[{c['bin_pad']}];"),
                                     1 if c["bin_pad"] else 0)
                self.assertEqual("#define HAK_BIN_STRIDE " in out["hak_spec.h"], dispatch == "table")
                self.assertIn("offsetof(struct hak_thread_slot, block) == 64,", out["hak_tables.c"])


class SizeGridTest(TempDirTest):
    """malloc's table front finds a tiny size's bin by arithmetic, as free
    finds a code's, when every tiny class is on the 16-byte grid, has a cache
    tier of the one kind all first tiers have, and bins have a stride."""

    GRID = edit(edit(SMALL, "    - { size: 32, ring: 128, sll: 256, refill: 64 }\n",
                            "    - { size: 32, ring: 128, sll: 256, refill: 64 }\n"
                            "    - { size: 48, ring: 128, sll: 256, refill: 64 }\n"),
                "    - { size: 128, ring: 64, sll: 128, refill: 32 }\n"
                "    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }\n"
                "mid:\n  tiers: [ring, slab]\n  ring: 16\n  refill: 8\n  classes: [384, 512, 1024, 2048]\n",
                "mid:\n  tiers: [ring, slab]\n  ring: 16\n  refill: 8\n  classes: [128, 512, 1024, 2048]\n")
    ARITH = "if (HAK_LIKELY(n <= {}u))\n        o = ((n + 15) >> 4) * HAK_BIN_STRIDE;"

    def malloc_front(self, text):
        self.write("s.yaml", text)
        self.assertOk(self.hakgen("generate", "s.yaml", "o"))
        out = read_outputs(os.path.join(self.tmp, "o"))
        m = resolve.model(resolve.resolve(load_spec(os.path.join(self.tmp, "s.yaml"))), "s.yaml")
        front = out["hak_front.h"].split("HAK_INLINE void *hak_front_malloc(size_t n)")[1].split("\n}\n")[0]
        self.assertIn(f"#define HAK_SIZE_GRID {m['size_grid']}u\n", out["hak_spec.h"])
        return m, front

    def test_grid(self):
        """16, 32, 48, 64 B, every class ring-first (tiny [ring, sll, slab],
        mid [ring, slab]): up to 64 B by arithmetic, which finds the bin of
        the class the size table names, at every size but 0 (whose index 0
        is code 0's empty bin: malloc(0) takes the miss path)."""
        m, front = self.malloc_front(self.GRID)
        self.assertEqual([c["size"] for c in m["classes"][:4]], [16, 32, 48, 64])
        self.assertEqual(m["size_grid"], 64)
        self.assertIn(self.ARITH.format(64), front)
        # the tiny bound first: a tiny size makes one compare, not two
        self.assertLess(front.index("n <= 64u"), front.index("n <= HAK_MAX_CLASS_SIZE"))
        for n in range(1, 65):
            i = (n + 15) >> 4
            self.assertEqual(m["classes"][m["size_table"][i]]["bin_at"], i * m["bin_stride"], n)

    def test_no_grid(self):
        """A gap, a tiny class with no cache, first tiers of both kinds, or
        the switch dispatch (no stride): the table for every size."""
        cases = {
            "gap": edit(edit(self.GRID, "{ size: 48,", "{ size: 80,"), "{ size: 64,", "{ size: 96,"),
            "no cache": edit(self.GRID, "{ size: 48, ring: 128, sll: 256, refill: 64 }",
                             "{ size: 48, ring: 128, sll: 256, refill: 64, tiers: [slab] }"),
            "both kinds": edit(self.GRID, "{ size: 48, ring: 128, sll: 256, refill: 64 }",
                               "{ size: 48, ring: 128, sll: 256, refill: 64, tiers: [sll, ring, slab] }"),
            "switch": edit(self.GRID, "options:\n", "options:\n  dispatch: switch\n"),
        }
        for name, text in cases.items():
            with self.subTest(name):
                m, front = self.malloc_front(text)
                self.assertEqual(m["size_grid"], 0)
                self.assertNotIn("HAK_BIN_STRIDE", front)

    def test_shipped(self):
        """The default's classes are on the grid up to 1024 B; the ring
        spec's only up to 128 B: no arithmetic."""
        for path, grid in ((DEFAULT_SPEC, 1024), (os.path.join(VARIANTS, "ring.yaml"), 0)):
            with self.subTest(path):
                m = resolve.model(resolve.resolve(load_spec(path)), path)
                self.assertEqual(m["size_grid"], grid)


class SizeTableTest(TempDirTest):
    """size -> class: the smallest class that holds the size, at every size."""

    def parse(self, tables_c):
        info = [int(s) for s in re.findall(r"\{ \.size = (\d+),", tables_c)]
        body = re.search(r"const uint8_t hak_size_class\[(\d+)\] = \{\n(.*?)\n\};", tables_c, re.S)
        table = [int(x) for x in re.findall(r"\d+", body.group(2))]
        self.assertEqual(len(table), int(body.group(1)))
        return info, table

    def check_table(self, sizes, table):
        """Every n in 0..max maps to class c with sizes[c] >= n > sizes[c-1]."""
        max_size = sizes[-1]
        self.assertEqual(len(table), max_size // 16 + 1)
        for n in range(max_size + 1):
            c = table[(n + 15) >> 4]
            self.assertGreaterEqual(sizes[c], n, n)
            if c > 0:
                self.assertLess(sizes[c - 1], n, n)
        for i, size in enumerate(sizes):  # the boundaries, as jemalloc's test does
            self.assertEqual(table[(size - 1 + 15) >> 4], i)
            self.assertEqual(table[(size + 15) >> 4], i)
            if i + 1 < len(sizes):
                self.assertEqual(table[(size + 1 + 15) >> 4], i + 1)

    def check_spec(self, path):
        out = os.path.join(self.tmp, "out-" + os.path.basename(path))
        proc = run_hakgen("generate", path, out, cwd=REPO)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        sizes, table = self.parse(read_outputs(out)["hak_tables.c"])
        r = resolve.resolve(load_spec(path))
        self.assertEqual(sizes, [c["size"] for c in r["tiny"]["classes"]] + r["mid"]["classes"])
        self.check_table(sizes, table)
        m = resolve.model(r, path)
        self.assertEqual(m["size_table"], table)
        self.assertEqual(m["max_size"], sizes[-1])
        # hak_class_of_size, the constant-folding form, agrees with the table
        front = read_outputs(out)["hak_front.h"]
        chain = re.findall(r"n <= (\d+) \? (\d+) :", front)
        self.assertEqual([(int(s), int(c)) for s, c in chain], [(s, i) for i, s in enumerate(sizes)])

    def test_default(self):
        self.check_spec(DEFAULT_SPEC)

    def test_variants(self):
        for fname in sorted(os.listdir(VARIANTS)):
            if fname.endswith(".yaml"):
                with self.subTest(fname):
                    self.check_spec(os.path.join(VARIANTS, fname))

    def test_small_and_odd_tables(self):
        self.check_spec(self.write("small.yaml", SMALL))
        one = SMALL.split("  classes:\n")[0] + "  classes:\n    - { size: 16 }\nmid:" + SMALL.split("mid:")[1]
        self.check_spec(self.write("one.yaml", edit(one, "[384, 512, 1024, 2048]", "[]")))
        self.check_spec(self.write("steps.yaml", edit(SMALL, "[384, 512, 1024, 2048]", "[512, 1024, 1040]")))

    def test_model_spans(self):
        """Each class's span: a power-of-two number of slabs, at most a quarter superslab,
        the first whose tail waste is within SPAN_WASTE_LIMIT and that holds
        SPAN_MIN_BLOCKS blocks; where none does (the classes above 64 KiB), the first
        of those that waste the least share of their bytes."""
        r = resolve.resolve(load_spec(DEFAULT_SPEC))
        m = resolve.model(r, "spec/classes.yaml")
        slab, total = r["superslab"]["slab_bytes"], r["superslab"]["bytes"]
        spans = [slab << k for k in range(64) if slab << k <= total // 4]
        few = 0
        for c in m["classes"]:
            span, stride = c["span_bytes"], c["stride"]
            self.assertIn(span, spans)
            self.assertEqual(c["blocks"], span // stride)
            self.assertEqual(c["waste_bytes"], span - c["blocks"] * stride)
            fits = [s for s in spans if s % stride <= s * resolve.SPAN_WASTE_LIMIT
                    and s // stride >= resolve.SPAN_MIN_BLOCKS]
            if fits:
                self.assertEqual(span, fits[0], c)
            else:
                few += 1
                held = [s for s in spans if s >= stride]
                least = min(held, key=lambda s: (s % stride) / s)
                self.assertEqual(span, least, c)
        self.assertEqual(few, 8)  # 81920 B and up: 3 to a span of 81920 B, 1 of 262144 B


class StridePadTest(TempDirTest):
    """options.stride_pad (default true): a tiny class whose size is a multiple
    of 512 B has its blocks 16 B further apart than its size, so that their
    first lines do not all fall in 8 of the first-level cache's sets."""

    def generate(self, text):
        self.write("s.yaml", text)
        self.assertOk(self.hakgen("generate", "s.yaml", "o"))
        out = read_outputs(os.path.join(self.tmp, "o"))
        m = resolve.model(resolve.resolve(load_spec(os.path.join(self.tmp, "s.yaml"))), "s.yaml")
        return m, out

    def test_default_spec(self):
        m = resolve.model(resolve.resolve(load_spec(DEFAULT_SPEC)), DEFAULT_SPEC)
        padded = {c["size"]: (c["stride"], c["blocks"], c["span_bytes"])
                  for c in m["classes"] if c["stride"] != c["size"]}
        self.assertEqual(padded, {512: (528, 124, 65536), 1024: (1040, 63, 65536)})
        # the mid classes keep their sizes, multiples of 512 or not
        self.assertEqual([c["size"] for c in m["classes"] if c["kind"] == "mid"][:4],
                         [1280, 1536, 1792, 2048])

    def test_generated_constants(self):
        """On and off: the class table, free's per-class offset check, and the
        block-start constants, which follow the stride."""
        text = edit(SMALL, "    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }\n",
                    "    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }\n"
                    "    - { size: 512, ring: 32, sll: 64, refill: 16 }\n"
                    "    - { size: 1536, ring: 16, sll: 32, refill: 8 }\n")
        text = edit(text, "classes: [384, 512, 1024, 2048]", "classes: [2048, 4096]")
        for pad, stride512, blocks512 in ((True, 528, 124), (False, 512, 128)):
            with self.subTest(pad=pad):
                m, out = self.generate(edit(text, "options:\n",
                                            f"options:\n  stride_pad: {str(pad).lower()}\n"))
                strides = [(c["size"], c["stride"]) for c in m["classes"]]
                self.assertEqual(strides, [(16, 16), (32, 32), (64, 64), (128, 128), (256, 256),
                                           (512, stride512), (1536, 1536 + (16 if pad else 0)),
                                           (2048, 2048), (4096, 4096)])
                c512 = m["classes"][5]
                self.assertEqual(c512["blocks"], blocks512)
                self.assertIn(f"{{ .size = 512, .stride = {stride512}, .span_bytes = 65536, "
                              f".blocks = {blocks512},", out["hak_tables.c"])
                div_mul = -(-(1 << 64) // stride512)
                self.assertEqual(c512["div_mul"], div_mul)
                excess = stride512 * div_mul - (1 << 64)
                self.assertEqual(c512["start_limit"], blocks512 * excess if excess else 1)
                # a power of two: the offset's low bits; otherwise the one multiply and
                # compare of the table front, which rejects the span's tail too
                check = (f"if (HAK_UNLIKELY((uint64_t)off * {div_mul}ull >= {blocks512 * excess}ull))"
                         if pad else "if (HAK_UNLIKELY(off % 512u != 0))")
                free_c5 = out["hak_front.h"].split("HAK_INLINE void hak_free_c5(void *p)")[1]
                self.assertIn(check, free_c5.split("\n}\n")[0])

    def test_not_past_a_slab(self):
        """A size that fills a slab keeps it as its stride: 16 B more would
        not fit."""
        text = edit(edit(SMALL, "  slab_bytes: 64KiB", "  slab_bytes: 4KiB"),
                    "    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }\n",
                    "    - { size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }\n"
                    "    - { size: 3584, ring: 32, sll: 64, refill: 16 }\n"
                    "    - { size: 4096, ring: 32, sll: 64, refill: 16 }\n")
        text = edit(text, "classes: [384, 512, 1024, 2048]", "classes: [8192]")
        m, _ = self.generate(text)
        self.assertEqual([(c["size"], c["stride"]) for c in m["classes"][5:]],
                         [(3584, 3600), (4096, 4096), (8192, 8192)])
