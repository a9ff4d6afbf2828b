"""The overlay language (spec/README.md, "Variants"): what each construct does to the
resolved spec, checked on genutil.SMALL and on the shipped spec/variants/."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import DEFAULT_SPEC, REPO, SMALL, VARIANTS, TempDirTest, run_hakgen  # noqa: E402

import resolve  # noqa: E402
from overlay import load_spec  # noqa: E402


def by_size(resolved):
    return {c["size"]: c for c in resolved["tiny"]["classes"]}


class OverlayTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.base_path = self.write("small.yaml", SMALL)
        self.base = resolve.resolve(load_spec(self.base_path))

    def overlay(self, text, name="over.yaml"):
        return resolve.resolve(load_spec(self.write(name, "base: small.yaml\n" + text)))

    def assertOnly(self, got, **changes):
        """got equals the base spec with `changes` (top-level sections) applied."""
        want = dict(self.base, **changes)
        self.assertEqual(got, want)

    def test_empty_overlay_is_the_base_renamed(self):
        self.assertOnly(self.overlay(""), name="over")

    def test_name_defaults_to_file_stem(self):
        self.assertEqual(self.overlay("", name="ring-small.v2.yaml")["name"], "ring-small.v2")
        self.assertEqual(self.overlay("name: explicit\n")["name"], "explicit")

    def test_all_sets_field_on_every_class(self):
        got = self.overlay("tiny:\n  all: { ring: 32, refill: 16, prewarm: 8 }\n")
        for size, c in by_size(got).items():
            with self.subTest(size=size):
                self.assertEqual(c["prewarm"], 8)
                if "ring" in c["tiers"]:
                    self.assertEqual((c["ring"], c["refill"]), (32, 16))
                else:  # 256 B has tiers [sll, slab]: no ring, so ring stays 0
                    self.assertEqual((c["ring"], c["refill"]), (0, 16))
                self.assertEqual(c["sll"], by_size(self.base)[size]["sll"])

    def test_all_tiers(self):
        got = self.overlay("tiny:\n  all: { tiers: [ring, slab] }\n")
        self.assertTrue(all(c["tiers"] == ["ring", "slab"] and c["sll"] == 0
                            for c in got["tiny"]["classes"]))
        self.assertEqual(by_size(got)[256]["ring"], 32)  # set in the base, unused until now

    def test_class_patch_wins_over_all(self):
        got = by_size(self.overlay("tiny:\n  all: { ring: 32, refill: 16 }\n"
                                   "  classes:\n    64: { ring: 8, refill: 4 }\n"))
        self.assertEqual((got[64]["ring"], got[64]["refill"]), (8, 4))
        self.assertEqual((got[32]["ring"], got[32]["refill"]), (32, 16))
        self.assertEqual(got[64]["sll"], 256)  # not in the patch: the base's

    def test_patch_edits_only_its_fields(self):
        got = self.overlay("tiny:\n  classes:\n    128: { sll: 512 }\n")
        classes = [dict(c) for c in self.base["tiny"]["classes"]]
        classes[3]["sll"] = 512
        self.assertOnly(got, name="over", tiny={"classes": classes})

    def test_null_patch_removes_class(self):
        got = self.overlay("tiny:\n  classes:\n    32: null\n    128: ~\n")
        self.assertEqual([c["size"] for c in got["tiny"]["classes"]], [16, 64, 256])
        self.assertEqual(by_size(got)[64], by_size(self.base)[64])

    def test_new_size_adds_class_in_order(self):
        got = self.overlay("tiny:\n  classes:\n    48: { ring: 8, refill: 8 }\n    512: {}\n"
                           "mid: { classes: [768, 1024] }\n")
        self.assertEqual([c["size"] for c in got["tiny"]["classes"]], [16, 32, 48, 64, 128, 256, 512])
        self.assertEqual(by_size(got)[48], {"size": 48, "ring": 8, "sll": 128, "refill": 8, "prewarm": 0,
                                            "transfer": 0, "tiers": ["ring", "sll", "slab"]})
        # 512 is above the last tiny class: defaults from resolve.CLASS_DEFAULTS
        self.assertEqual(by_size(got)[512], dict(resolve.CLASS_DEFAULTS, size=512,
                                                 tiers=["ring", "sll", "slab"]))

    def test_all_reaches_added_class(self):
        got = by_size(self.overlay("tiny:\n  all: { ring: 16, refill: 8 }\n"
                                   "  classes:\n    48: { sll: 32 }\n"))
        self.assertEqual((got[48]["ring"], got[48]["sll"], got[48]["refill"]), (16, 32, 8))

    def test_list_replaces_table(self):
        got = self.overlay("tiny:\n  classes:\n    - { size: 32, ring: 8, refill: 8 }\n"
                           "    - { size: 256 }\n")
        self.assertEqual(got["tiny"]["classes"], [
            {"size": 32, "ring": 8, "sll": 128, "refill": 8, "prewarm": 0, "transfer": 0,
             "tiers": ["ring", "sll", "slab"]},
            dict(resolve.CLASS_DEFAULTS, size=256, tiers=["ring", "sll", "slab"])])

    def test_all_applies_to_a_replacing_list(self):
        got = self.overlay("tiny:\n  all: { sll: 16, refill: 4 }\n  classes:\n"
                           "    - { size: 32, refill: 8 }\n    - { size: 256 }\n")
        self.assertEqual([(c["sll"], c["refill"]) for c in got["tiny"]["classes"]], [(16, 8), (16, 4)])

    def test_all_in_a_base_file_fills_what_rows_omit(self):
        text = SMALL.replace("  tiers: [ring, sll, slab]\n", "  tiers: [ring, sll, slab]\n"
                             "  all: { prewarm: 4, ring: 256 }\n", 1)
        got = by_size(resolve.resolve(load_spec(self.write("b.yaml", text))))
        self.assertEqual([(c["ring"], c["prewarm"]) for c in got.values()],
                         [(128, 4), (128, 4), (128, 4), (64, 4), (0, 4)])

    def test_tiers_default_changes_for_classes_without_their_own(self):
        got = by_size(self.overlay("tiny:\n  tiers: [sll, slab]\n"))
        self.assertEqual(got[16]["tiers"], ["sll", "slab"])
        self.assertEqual(got[16]["ring"], 0)
        self.assertEqual(got[256]["tiers"], ["sll", "slab"])

    def test_options_merge_key_by_key(self):
        got = self.overlay("options:\n  metrics: true\n")
        self.assertOnly(got, name="over", options=dict(self.base["options"], metrics=True))

    def test_superslab_merge_key_by_key(self):
        got = self.overlay("superslab: { bytes: 4MiB }\n")
        self.assertOnly(got, name="over", superslab={"bytes": 4 << 20, "slab_bytes": 64 << 10,
                                                     "huge_pages": False})
        got = self.overlay("superslab: { huge_pages: true }\n")
        self.assertOnly(got, name="over", superslab={"bytes": 2 << 20, "slab_bytes": 64 << 10,
                                                     "huge_pages": True})

    def test_mid_list_replaces(self):
        got = self.overlay("mid:\n  classes: [512]\n  ring: 4\n  refill: 2\n")
        self.assertOnly(got, name="over", mid={"tiers": ["ring", "slab"], "ring": 4, "sll": 0,
                                               "refill": 2, "transfer": 0, "class_cache_bytes": 0,
                                               "classes": [512]})

    def test_mid_list_first(self):
        got = self.overlay("mid:\n  tiers: [sll, ring, slab]\n  sll: 32\n")
        self.assertOnly(got, name="over", mid={"tiers": ["sll", "ring", "slab"], "ring": 16,
                                               "sll": 32, "refill": 8, "transfer": 0,
                                               "class_cache_bytes": 0,
                                               "classes": [384, 512, 1024, 2048]})

    def test_transfer_needs_a_cache_tier(self):
        got = self.overlay("tiny:\n  all: { transfer: 3 }\n  classes:\n    64: { tiers: [slab] }\n"
                           "mid: { transfer: 5 }\n")
        self.assertEqual({s: c["transfer"] for s, c in by_size(got).items()},
                         {16: 3, 32: 3, 64: 0, 128: 3, 256: 3})
        self.assertEqual(got["mid"]["transfer"], 5)
        got = self.overlay("mid: { tiers: [slab], transfer: 5 }\n")
        self.assertEqual(got["mid"]["transfer"], 0)

    def test_transfer_only_where_the_runtime_moves_batches(self):
        # runtime/transfer.c gives a list-first class with refill > 64 no room, and
        # thread.c's flush puts a batch only from a last tier holding refill blocks, a
        # list's only when refill <= 64: a transfer there was hashed but never used
        got = self.overlay(
            "tiny:\n  all: { transfer: 3 }\n  classes:\n"
            "    16: { ring: 128, refill: 65 }\n"                             # list last, > 64
            "    32: { sll: 32 }\n"                                          # sll < refill 64
            "    64: { tiers: [sll, slab], sll: 256, refill: 128 }\n"        # list first, > 64
            "    128: { tiers: [sll, ring, slab], sll: 64, ring: 16 }\n"     # ring 16 < refill 32
            "mid: { tiers: [ring, slab], ring: 256, refill: 128, transfer: 5 }\n")
        self.assertEqual({s: c["transfer"] for s, c in by_size(got).items()},
                         {16: 0, 32: 0, 64: 0, 128: 0, 256: 3})
        self.assertEqual(got["mid"]["transfer"], 5)  # a ring takes and gives any batch
        got = self.overlay("mid: { tiers: [sll, slab], sll: 256, refill: 100, transfer: 5 }\n")
        self.assertEqual(got["mid"]["transfer"], 0)
        got = self.overlay("tiny:\n  all: { transfer: 3 }\nmid: { transfer: 5 }\n"
                           "options: { decay_ms: 0 }\n")  # no transfer caches at all
        self.assertEqual([c["transfer"] for c in got["tiny"]["classes"]] + [got["mid"]["transfer"]],
                         [0] * 6)
        # what behaves the same hashes the same
        unused = self.overlay("mid: { tiers: [sll, slab], sll: 256, refill: 100, transfer: 5 }\n",
                              name="a.yaml")
        none = self.overlay("mid: { tiers: [sll, slab], sll: 256, refill: 100 }\n", name="a.yaml")
        self.assertEqual(resolve.spec_hash(unused), resolve.spec_hash(none))

    def test_chained_overlays(self):
        self.write("v/a.yaml", "base: ../small.yaml\ntiny:\n  all: { ring: 32, refill: 16 }\n"
                   "options: { metrics: true }\n")
        self.write("v/b.yaml", "base: a.yaml\ntiny:\n  classes:\n    64: { ring: 8, refill: 8 }\n"
                   "options: { decay_ms: 0 }\n")
        a = resolve.resolve(load_spec(os.path.join(self.tmp, "v/a.yaml")))
        b = resolve.resolve(load_spec(os.path.join(self.tmp, "v/b.yaml")))
        self.assertEqual((a["name"], b["name"]), ("a", "b"))
        self.assertEqual(b["options"], {"metrics": True, "free_check": "guarded", "decay_ms": 0,
                                        "dispatch": "table", "tls": "pointer", "stride_pad": True})
        got = by_size(b)
        self.assertEqual((got[64]["ring"], got[64]["refill"]), (8, 8))
        self.assertEqual((got[16]["ring"], got[16]["refill"]), (32, 16))
        # the same through the CLI: b's diff against a is exactly b's own edits
        self.assertEqual(self.assertOk(self.hakgen("diff", "v/a.yaml", "v/b.yaml")),
                         "name: a -> b\n"
                         "options.decay_ms: 1000 -> 0\n"
                         "tiny.classes[size=64].refill: 16 -> 8\n"
                         "tiny.classes[size=64].ring: 32 -> 8\n")

    def test_base_path_is_relative_to_the_overlay(self):
        self.write("deep/er/x.yaml", "base: ../../small.yaml\n")
        proc = run_hakgen("validate", os.path.join(self.tmp, "deep/er/x.yaml"), cwd=REPO)
        self.assertEqual(proc.returncode, 0, proc.stderr)


    def test_errors_name_the_base_that_was_read(self):
        # through a symlinked directory `..` climbs out of where the link leads: errors
        # named the tidied `b.yaml` beside the link, another file, not the one read
        self.write("b.yaml", SMALL)
        self.write("real/b.yaml", SMALL.replace("name: small\n", "name: [bad]\n"))
        self.write("real/sub/over.yaml", "base: ../b.yaml\n")
        os.symlink(os.path.join("real", "sub"), os.path.join(self.tmp, "link"))
        self.assertSpecError(self.hakgen("validate", "link/over.yaml"),
                             "link/../b.yaml:2: name: expected a name of letters, digits, '_', "
                             "'-', '.', got a list")
        # where the tidy name is the same file, it is the name
        self.write("plain/x.yaml", "base: ./../real/b.yaml\n")
        self.assertSpecError(self.hakgen("validate", "plain/x.yaml"),
                             "real/b.yaml:2: name: expected a name of letters, digits, '_', "
                             "'-', '.', got a list")

class VariantsTest(TempDirTest):
    """Every shipped variant validates; the two examples change only what they say."""

    def test_every_variant_validates(self):
        names = sorted(f for f in os.listdir(VARIANTS) if f.endswith(".yaml"))
        self.assertTrue({"ring64.yaml", "trusted.yaml"} <= set(names), names)
        for fname in names:
            with self.subTest(fname):
                proc = run_hakgen("validate", f"spec/variants/{fname}", cwd=REPO)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertRegex(proc.stdout, rf"^spec/variants/{fname}: ok: {fname[:-5]} [0-9a-f]{{16}}\n$")
                with open(os.path.join(VARIANTS, fname), encoding="utf-8") as f:
                    self.assertTrue(f.readline().startswith("# "), "starts with a comment")

    def test_ring64(self):
        base = resolve.resolve(load_spec(os.path.join(VARIANTS, "ring.yaml")))
        got = resolve.resolve(load_spec(os.path.join(VARIANTS, "ring64.yaml")))
        want = [dict(c, ring=64) for c in base["tiny"]["classes"]]
        self.assertEqual(got, dict(base, name="ring64", tiny={"classes": want}))

    def test_ring_is_the_old_default(self):
        """ring.yaml on the default: 20 ring-first tiny classes of 256 blocks,
        mid rings of 64 and the default's mid classes up to 32 KiB, no lists, the
        default's transfers."""
        got = resolve.resolve(load_spec(os.path.join(VARIANTS, "ring.yaml")))
        base = resolve.resolve(load_spec(DEFAULT_SPEC))
        sizes = [16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256,
                 320, 384, 448, 512, 640, 768, 896, 1024]
        self.assertEqual([c["size"] for c in got["tiny"]["classes"]], sizes)
        for c in got["tiny"]["classes"]:
            self.assertEqual((c["tiers"], c["ring"], c["sll"], c["transfer"]),
                             (["ring", "slab"], 256, 0, 32), c["size"])
            self.assertEqual(c["refill"], 64 if c["size"] <= 64 else 32 if c["size"] <= 256 else 16)
        self.assertEqual(got["mid"], dict(base["mid"], tiers=["ring", "slab"], ring=64, sll=0,
                                          classes=[s for s in base["mid"]["classes"] if s <= 32768]))
        self.assertEqual(dict(got, name="default", tiny=None, mid=None), dict(base, tiny=None, mid=None))

    def test_trusted(self):
        base = resolve.resolve(load_spec(DEFAULT_SPEC))
        got = resolve.resolve(load_spec(os.path.join(VARIANTS, "trusted.yaml")))
        self.assertEqual(got, dict(base, name="trusted", options=dict(base["options"], free_check="trusted")))


class ReadmeTest(TempDirTest):
    """spec/README.md: its YAML examples are valid specs, its numbers are the code's."""

    def setUp(self):
        super().setUp()
        with open(os.path.join(REPO, "spec", "README.md"), encoding="utf-8") as f:
            self.readme = f.read()

    def test_examples_validate(self):
        import re
        import shutil
        blocks = re.findall(r"```yaml\n(.*?)```", self.readme, re.S)
        self.assertGreaterEqual(len(blocks), 4)
        shutil.copy(DEFAULT_SPEC, os.path.join(self.tmp, "classes.yaml"))
        os.makedirs(os.path.join(self.tmp, "variants"), exist_ok=True)
        shutil.copy(os.path.join(VARIANTS, "ring.yaml"), os.path.join(self.tmp, "variants"))
        for i, text in enumerate(blocks):
            with self.subTest(i=i, head=text.splitlines()[0]):
                name = f"variants/example{i}.yaml" if "base:" in text else f"example{i}.yaml"
                self.write(name, text)
                self.assertOk(self.hakgen("validate", name))

    def test_class_defaults_and_limits(self):
        import re
        for field, default in resolve.CLASS_DEFAULTS.items():
            row = re.search(rf"^\| `{field}` \|.*\| (\d+) \| [^|]+\|$", self.readme, re.M)
            self.assertIsNotNone(row, field)
            self.assertEqual(int(row.group(1)), default, field)
        for text in (f"1..{resolve.RING_MAX} (`RING_MAX`)", f"1..{resolve.SLL_MAX} (`SLL_MAX`)",
                     f"At most {resolve.MAX_CLASSES} classes"):
            self.assertTrue(text in self.readme, text)
        self.assertEqual(resolve.SPAN_WASTE_LIMIT, 1 / 16)
        self.assertRegex(self.readme, r"at most 1/16 of\s+the span \(`SPAN_WASTE_LIMIT`\)")
