"""gen/hakgen tune: size classes by dynamic programming over a profile's histogram,
caches from its bursts, a commented overlay that validates; errors in a profile."""
import itertools
import json
import os
import random
import re
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import DEFAULT_SPEC, VARIANTS, TempDirTest, run_hakgen  # noqa: E402

import resolve  # noqa: E402
import tune  # noqa: E402
from overlay import load_spec  # noqa: E402

RING_SPEC = os.path.join(VARIANTS, "ring.yaml")  # ring-first classes, not a grid
BASE_SIZES = ([16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
               640, 768, 896, 1024]
              + [1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
                 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768])


def profile(hist, bursts=None, peak=None, large=(), threads=1, remote=None):
    """A version 1 profile of the ring spec's 40 classes (BASE_SIZES): `hist` {size (a multiple of 16):
    requests}; `bursts` {class size: ([[len_lo, n], ...] allocs, [...] frees)}; `remote`
    {class size: frees by another thread}."""
    bursts, peak, remote = bursts or {}, peak or {}, remote or {}
    classes, prev = [], 0
    for size in BASE_SIZES:
        reqs = sum(n for s, n in hist.items() if prev < s <= size or (s == 0 and prev == 0))
        default = ([[1, reqs]], [[1, reqs]]) if reqs else ([], [])
        a, f = bursts.get(size, default)
        classes.append({"size": size, "allocs": reqs, "frees": reqs,
                        "peak_out": peak.get(size, min(reqs, 64)),
                        "remote_frees": remote.get(size, 0),
                        "alloc_bursts": a, "free_bursts": f})
        prev = size
    return {"format": "hakmem-profile", "version": 1,
            "spec": {"name": "metrics", "hash": "0123456789abcdef"}, "threads": threads,
            "cross_thread_free_share": 0.0,
            "size_histogram": [[s, n] for s, n in sorted(hist.items())],
            "large_histogram": [list(p) for p in large], "classes": classes}


def cost(counts, positions):
    return sum(c * (16 * next(q for q in positions if q >= p) - 16 * p)
               for p, c in counts.items())


def brute_force(counts, n, k_max, first_pos=1, grid=0):
    """The least cost over every class set the rules allow (positions first_pos..n, n last;
    the first at most FIRST_MAX, or first_pos when that is larger; with a grid, positions
    1..grid all in the set)."""
    best = None
    first_top = max(tune.FIRST_MAX // 16, first_pos)
    for k in range(1, k_max + 1):
        for head in itertools.combinations(range(first_pos, n), k - 1):
            pos = list(head) + [n]
            if pos[0] > first_top or any(b > 2 * a for a, b in zip(pos, pos[1:])):
                continue
            if not set(range(1, grid + 1)) <= set(pos):
                continue
            c = cost(counts, pos)
            best = c if best is None else min(best, c)
    return best


def tuned_sizes(path):
    r = resolve.resolve(load_spec(path))
    return [c["size"] for c in r["tiny"]["classes"]] + r["mid"]["classes"], r


class DynamicProgramTest(unittest.TestCase):
    def test_optimal_against_brute_force(self):
        rng = random.Random(7)
        for _ in range(250):
            n = rng.randint(2, 13)
            k = rng.randint(tune.min_classes(n), min(n, 7))
            counts = {p: rng.choice([1, 3, 50, rng.randint(1, 1000)])
                      for p in range(n + 1) if rng.random() < 0.6}
            for prior in (False, True):
                pos, c = tune.choose_classes(counts, n, k, prior=prior)
                with self.subTest(n=n, k=k, counts=counts, prior=prior):
                    self.assertEqual(c, brute_force(counts, n, k))
                    self.assertEqual(c, cost(counts, pos))
                    self.assertLessEqual(len(pos), k)
                    self.assertEqual(pos, sorted(set(pos)))
                    self.assertEqual(pos[-1], n)
                    self.assertLessEqual(16 * pos[0], tune.FIRST_MAX)
                    self.assertTrue(all(b <= 2 * a for a, b in zip(pos, pos[1:])))

    def test_optimal_with_a_smallest_class(self):
        # a base whose slab puts more than 4096 blocks of 16 B in a span allows no class
        # below 16 * first_pos; the first class is then at most that (above FIRST_MAX)
        rng = random.Random(13)
        for _ in range(150):
            first_pos = rng.randint(1, 5)
            n = rng.randint(first_pos + 1, 13)
            k = rng.randint(tune.min_classes(n, first_pos), min(n, 7))
            counts = {p: rng.choice([1, 3, 50, rng.randint(1, 1000)])
                      for p in range(n + 1) if rng.random() < 0.6}
            pos, c = tune.choose_classes(counts, n, k, prior=rng.random() < 0.5,
                                         first_pos=first_pos)
            with self.subTest(n=n, k=k, counts=counts, first_pos=first_pos):
                self.assertEqual(c, brute_force(counts, n, k, first_pos))
                self.assertGreaterEqual(pos[0], first_pos)
                self.assertLessEqual(pos[0], max(tune.FIRST_MAX // 16, first_pos))
        self.assertEqual(tune.min_classes(32, 16), 2)  # 256 B, then 512
        with self.assertRaises(ValueError):
            tune.choose_classes({2: 5}, 32, 1, first_pos=16)

    def test_optimal_with_a_kept_grid(self):
        # a base's 16-byte grid (positions 1..grid) kept whole, the classes after it chosen
        rng = random.Random(17)
        for _ in range(150):
            grid = rng.randint(1, 5)
            n = rng.randint(grid, 12)
            k = rng.randint(tune.min_classes(n, grid=grid), min(n, grid + 5))
            counts = {p: rng.choice([1, 3, 50, rng.randint(1, 1000)])
                      for p in range(n + 1) if rng.random() < 0.6}
            pos, c = tune.choose_classes(counts, n, k, prior=rng.random() < 0.5, grid=grid)
            with self.subTest(n=n, k=k, counts=counts, grid=grid):
                self.assertEqual(c, brute_force(counts, n, k, grid=grid))
                self.assertEqual(c, cost(counts, pos))
                self.assertEqual(pos[:grid], list(range(1, grid + 1)))
                self.assertEqual(pos[-1], n)
                self.assertLessEqual(len(pos), k)
                self.assertTrue(all(b <= 2 * a for a, b in zip(pos, pos[1:])))
        # the default's 64 tiny classes, then 2048 B, 4096, .., 32 KiB: 69
        self.assertEqual(tune.min_classes(2048, grid=64), 69)
        with self.assertRaises(ValueError):
            tune.choose_classes({1: 1}, 3, 10, grid=5)  # the grid past the last class
        with self.assertRaises(ValueError) as e:
            tune.choose_classes({70: 5}, 2048, 68, grid=64)
        self.assertEqual(e.exception.args, (69,))

    def test_smallest_class_size_of_a_superslab(self):
        # the one bound tune needs: sizes from it up are all allowed, the one below is not
        for total, slab, smallest in ((2 << 20, 64 << 10, 16), (4 << 20, 128 << 10, 32),
                                      (8 << 20, 1 << 20, 256), (1 << 30, 128 << 20, 32768)):
            ss = {"bytes": total, "slab_bytes": slab}
            with self.subTest(ss=ss):
                self.assertEqual(resolve.smallest_class_size(ss), smallest)
                over = [size for size in range(smallest, min(total // 4, 1 << 20) + 1, 16)
                        if resolve._span(size, ss) // size > resolve.SPAN_MAX_BLOCKS]
                self.assertEqual(over, [])
                if smallest > 16:
                    below = smallest - 16
                    self.assertGreater(resolve._span(below, ss) // below, resolve.SPAN_MAX_BLOCKS)

    def test_single_size_gets_one_exact_class(self):
        for size in (16, 24 + 8, 208, 528, 1040, 4112, 20000 // 16 * 16):
            pos, c = tune.choose_classes({size // 16: 1000}, 2048, 12)
            self.assertIn(size // 16, pos)
            self.assertEqual(c, 0)

    def test_class_count_bound(self):
        rng = random.Random(3)
        counts = {p: rng.randint(1, 100) for p in rng.sample(range(1, 2049), 300)}
        previous = None
        for k in (11, 12, 16, 24, 40):
            pos, c = tune.choose_classes(counts, 2048, k)
            self.assertLessEqual(len(pos), k)
            if previous is not None:  # more classes never cost more
                self.assertLessEqual(c, previous)
            previous = c
        with self.assertRaises(ValueError):
            tune.choose_classes(counts, 2048, 10)  # 32 B .. 32 KiB by doubling: 11

    def test_prior_spreads_spare_classes(self):
        # all requests at 64 B: the other classes go where nothing was seen, in steps <= 2x
        pos, c = tune.choose_classes({4: 10}, 2048, 40)
        self.assertEqual(c, 0)
        self.assertEqual(len(pos), 40)


class PeakWeightTest(unittest.TestCase):
    def test_peak_blocks_share_a_class_peak_by_requests(self):
        # 144 and 160 B are both in the profiled 160 B class: its peak of 300 is shared 1:2
        p = tune.check_profile(profile({144: 100, 160: 200, 400: 5}, peak={160: 300, 448: 40}),
                               "p.json")
        live = tune.peak_blocks(p)
        self.assertEqual(live, {144: 100.0, 160: 200.0, 400: 40.0})
        self.assertEqual(tune.dp_weights(p), {9: 6400, 10: 12800, 25: 2560})

    def test_a_requested_size_never_weighs_nothing(self):
        p = tune.check_profile(profile({48: 100}, peak={48: 0}), "p.json")
        self.assertEqual(tune.dp_weights(p), {3: 1})

    def test_classes_follow_blocks_at_the_peak_not_requests(self):
        # 1000 requests of 80 B freed at once (peak 8) and 10 of 96 B that stay (peak 5000):
        # with one class to spare between 64 and 128 B it goes to 96, not to 80
        hist = {64: 10, 80: 1000, 96: 10, 128: 10}
        p = tune.check_profile(profile(hist, peak={64: 8, 80: 8, 96: 5000, 128: 8}), "p.json")
        by_requests, _ = tune.choose_classes({s // 16: n for s, n in hist.items()}, 8, 4)
        by_peak, _ = tune.choose_classes(tune.dp_weights(p), 8, 4)
        self.assertIn(5, by_requests)
        self.assertIn(6, by_peak)
        self.assertNotIn(6, by_requests)


class HugePagesTest(TempDirTest):
    def base(self, text=None):
        path = self.write("base.yaml", text) if text else DEFAULT_SPEC
        return resolve.resolve(load_spec(path))

    def test_huge_pages_for_a_large_heap_turned_over(self):
        busy = tune.HUGE_PAGES_MIN_TURNOVER * 8  # mallocs for 8 huge pages of heap
        small = tune.check_profile(profile({64: busy}, peak={64: 1000}), "p.json")
        big = tune.check_profile(profile({4096: busy}, peak={4096: 4096}), "p.json")  # 16 MiB
        idle = tune.check_profile(profile({4096: busy - 1}, peak={4096: 4096}), "p.json")
        self.assertEqual(tune.heap_bytes(big), tune.HUGE_PAGES_MIN_HEAP)
        self.assertFalse(tune.huge_pages_plan(small, self.base())[0])
        on, why = tune.huge_pages_plan(big, self.base())
        self.assertTrue(on)
        self.assertIn("16.0 MiB of blocks, 400,000 mallocs per 2 MiB", why)
        on, why = tune.huge_pages_plan(idle, self.base())
        self.assertFalse(on)
        self.assertIn("too few to pay for the huge-page faults", why)
        self.assertTrue(tune.huge_pages_plan(small, self.base(), "on")[0])
        self.assertFalse(tune.huge_pages_plan(big, self.base(), "off")[0])

    def test_no_huge_pages_on_superslabs_smaller_than_one(self):
        from genutil import SMALL, edit
        base = self.base(edit(SMALL, "bytes: 2MiB", "bytes: 1MiB"))
        big = tune.check_profile(profile({4096: 10 ** 8}, peak={4096: 8192}), "p.json")
        on, why = tune.huge_pages_plan(big, base)
        self.assertFalse(on)
        self.assertIn("smaller than a huge page", why)
        with self.assertRaises(tune.ProfileError):
            tune.huge_pages_plan(big, base, "on")


class LargeCacheTest(unittest.TestCase):
    def test_large_cache_holds_two_of_the_largest_request(self):
        def cache(large):
            return tune.large_cache_plan(
                tune.check_profile(profile({64: 1}, large=large), "p.json"))[0]
        self.assertEqual(cache([]), 0)
        self.assertEqual(cache([(65535, 0)]), 0)
        self.assertEqual(cache([(65535, 7), (1048575, 3)]), 2 << 20)
        self.assertEqual(cache([(33554431, 1)]), 64 << 20)
        self.assertEqual(cache([(2 ** 64 - 1, 1)]), tune.LARGE_CACHE_MAX)


class CachePlanTest(unittest.TestCase):
    def test_ring_follows_bursts(self):
        short = tune.cache_plan({1: 1000.0, 2: 100.0}, 10_000, 8, 256, True)
        self.assertEqual((short["ring"], short["refill"], short["sll"]), (8, 4, 0))
        long = tune.cache_plan({64: 1000.0}, 10_000, 8, 256, True)  # 64..127 per burst
        self.assertEqual((long["ring"], long["refill"], long["sll"]), (256, 128, 0))

    def test_ring_capped_by_peak_out(self):
        plan = tune.cache_plan({64: 1000.0}, 20, 8, 256, True)
        self.assertEqual(plan["ring"], 32)

    def test_sll_kept_only_for_bursts_beyond_the_ring(self):
        plan = tune.cache_plan({1: 100.0, 1024: 50.0}, 100_000, 8, 256, True)
        self.assertEqual(plan["ring"], 256)
        self.assertGreater(plan["sll"], 0)
        self.assertGreaterEqual(plan["spill"], tune.SLL_KEEP_SHARE)
        mid = tune.cache_plan({1: 100.0, 1024: 50.0}, 100_000, 8, 64, False)
        self.assertEqual((mid["ring"], mid["sll"]), (64, 0))


class ListPlanTest(unittest.TestCase):
    def test_base_list_kept_for_short_bursts(self):
        # bursts of 1..3 would size a ring of 8; a list stays the base's, refill too
        plan = tune.list_plan({1: 1000.0, 2: 100.0}, 10_000, 256, 32, 4096)
        self.assertEqual((plan["tiers"], plan["sll"], plan["refill"], plan["raised"]),
                         (["sll", "slab"], 256, 32, False))

    def test_raised_for_bursts_beyond_half_of_it(self):
        # 50 bursts of 1024..2047 against 100 of 1: nearly every operation is past 128
        plan = tune.list_plan({1: 100.0, 1024: 50.0}, 100_000, 256, 64, 4096)
        self.assertGreaterEqual(plan["spill"], tune.SLL_KEEP_SHARE)
        self.assertEqual((plan["sll"], plan["refill"], plan["raised"]), (2048, 64, True))
        self.assertEqual(tune.list_plan({1: 100.0, 1024: 50.0}, 100_000, 256, 64, 512)["sll"],
                         512)  # at most hi
        # a few long bursts carry less than 10% of the operations: not raised
        few = tune.list_plan({1: 100_000.0, 1024: 5.0}, 100_000, 256, 64, 4096)
        self.assertLess(few["spill"], tune.SLL_KEEP_SHARE)
        self.assertEqual(few["sll"], 256)

    def test_capped_by_peak_out(self):
        plan = tune.list_plan({1: 1000.0}, 5, 256, 64, 4096)
        self.assertEqual((plan["sll"], plan["refill"]), (8, 4))  # LIST_MIN, half of it
        self.assertEqual(tune.list_plan({1: 1000.0}, 100, 256, 64, 4096)["sll"], 128)
        tiny = tune.list_plan({1: 1000.0}, 1, 2, 1, 4096)  # a base list below LIST_MIN
        self.assertEqual((tiny["sll"], tiny["refill"]), (2, 1))


class TuneCommandTest(TempDirTest):
    def write_profile(self, data, name="p.json"):
        return self.write(name, json.dumps(data, indent=1))

    def tune(self, *args):
        return self.hakgen("tune", *args, "--base", DEFAULT_SPEC)

    def tune_ring(self, *args):
        return self.hakgen("tune", *args, "--base", RING_SPEC)

    def test_output_validates_and_is_deterministic(self):
        rng = random.Random(11)
        hist = {16 * rng.randint(0, 2048): rng.randint(1, 10_000) for _ in range(200)}
        bursts = {64: ([[1, 10], [64, 40]], [[2, 30], [128, 20]])}
        p = self.write_profile(profile(hist, bursts, large=[(65535, 3)]))
        first = self.assertOk(self.tune("p.json", "-o", "variants/tuned.yaml"))
        self.assertRegex(first, r"^hakgen: wrote variants/tuned\.yaml: \d+ classes")
        out = os.path.join(self.tmp, "variants", "tuned.yaml")
        with open(out, "rb") as f:
            text = f.read()
        self.assertIn(b"base: " + os.path.relpath(os.path.realpath(DEFAULT_SPEC),
                                                  os.path.realpath(os.path.dirname(out))).encode(),
                      text)
        valid = run_hakgen("validate", out)
        self.assertEqual(valid.returncode, 0, valid.stderr)
        self.assertRegex(valid.stdout, r": ok: tuned [0-9a-f]{16}\n$")
        # again, elsewhere, with another hash seed: the same bytes; unchanged is not rewritten
        self.write_profile(profile(hist, bursts, large=[(65535, 3)]), "q/p.json")
        again = run_hakgen("tune", os.path.join(self.tmp, "q/p.json"), "-o", out,
                           "--base", DEFAULT_SPEC, env={"PYTHONHASHSEED": "12345"})
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("hakgen: unchanged ", again.stdout)
        other = os.path.join(self.tmp, "variants", "tuned2.yaml")
        self.assertOk(self.tune(p, "-o", other))
        with open(other, "rb") as f:
            self.assertEqual(f.read(), text)

    def test_every_class_commented_and_sizes_observed(self):
        hist = {32: 500, 48: 300, 144: 200, 208: 100, 528: 80, 1040: 20, 4112: 5}
        self.write_profile(profile(hist))
        self.assertOk(self.tune("p.json", "-o", "t.yaml", "--max-classes", "20"))
        path = os.path.join(self.tmp, "t.yaml")
        sizes, r = tuned_sizes(path)
        self.assertLessEqual(len(sizes), 20)
        for s in hist:
            self.assertIn(s, sizes)  # every size seen gets its exact class here
        self.assertEqual(sizes[-1], 262144)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        entries = [ln for ln in lines if ln.lstrip().startswith("- ")]
        self.assertEqual(len(entries), len(sizes))
        for ln in entries:
            self.assertRegex(ln, r"  # \d+(\.\.\d+)? B: ")
        self.assertTrue(any("32 B: " in ln and "% of requests" in ln for ln in entries))

    def test_max_classes_bound_and_too_few(self):
        rng = random.Random(5)
        hist = {16 * rng.randint(1, 2048): rng.randint(1, 100) for _ in range(500)}
        self.write_profile(profile(hist))
        for k in ("14", "25", "40"):
            self.assertOk(self.tune("p.json", "-o", f"k{k}.yaml", "--max-classes", k))
            sizes, _ = tuned_sizes(os.path.join(self.tmp, f"k{k}.yaml"))
            self.assertLessEqual(len(sizes), int(k))
        proc = self.tune("p.json", "-o", "few.yaml", "--max-classes", "13")
        self.assertSpecError(proc, "--max-classes: 13 is too few: 14 classes are needed to "
                                   "cover 16..262144 B with each class at most twice the one "
                                   "before it")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "few.yaml")))

    def test_single_size_profile(self):
        """208 B alone: a class of exactly that size.  Against the ring spec's
        classes (224 B serves it) the base wastes 16 of every 208 bytes; the
        default's classes are every 16 B, so it wastes none either."""
        self.write_profile(profile({208: 12345}))
        ring = os.path.join(VARIANTS, "ring.yaml")
        for base, base_waste in ((ring, "7.7%"), (DEFAULT_SPEC, "0.0%")):
            with self.subTest(base):
                self.assertOk(self.hakgen("tune", "p.json", "-o", "one.yaml", "--base", base))
                sizes, r = tuned_sizes(os.path.join(self.tmp, "one.yaml"))
                self.assertIn(208, sizes)  # every request gets a block of exactly its size
                with open(os.path.join(self.tmp, "one.yaml"), encoding="utf-8") as f:
                    text = f.read()
                self.assertIn("# Internal fragmentation at the peak: 0.0% of the 13.0 KiB live; "
                              f"under the base's classes {base_waste}.\n# Over the requests: 0.0% "
                              "of the bytes asked (0 B per request)", text)
                self.assertRegex(text, r"size: 208, .*# \d+\.\.208 B: 100\.0% of requests")

    def test_no_bytes_no_percentage(self):
        # malloc(0) only: 16 B of rounding per block over 0 bytes live or asked was
        # "8000.0% of the 0.0 KiB live" (a share of max(1, 0) bytes)
        self.write_profile(profile({0: 5}))
        out = self.assertOk(self.tune("p.json", "-o", "t.yaml"))
        self.assertIn(", internal fragmentation at the peak n/a: no bytes live at the peak, "
                      "huge pages off;", out)
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("\n# Internal fragmentation at the peak: n/a: no bytes live at the peak.\n"
                      "# Over the requests: n/a: no bytes asked (16 B per request; base 16 B).\n",
                      text)
        self.assertNotRegex(out + text, r"\d{4}\.\d%")

    def assertProfileError(self, proc, message):
        self.assertSpecError(proc, message)

    def test_errors(self):
        good = profile({64: 10})
        cases = [
            ("", "p.json: empty profile (was the program run with HAKMEM_PROFILE under a "
                 "metrics build, and did it exit normally?)"),
            ("{\n  \"format\": \"hakmem-profile\",\n  \"version\": 1\n  \"threads\": 1\n}\n",
             "p.json:4: malformed JSON: Expecting ',' delimiter (column 3)"),
            ("{\"format\": \"hakmem-profile\", \"version\": 1, \"size_histo",
             "p.json:1: malformed JSON: Unterminated string starting at (column 44)"),
            ("[1, 2, 3]", "p.json: not a hakmem profile (no \"format\" field; expected "
                          "\"hakmem-profile\")"),
            (json.dumps(dict(good, format="callgrind")),
             "p.json: not a hakmem profile (format \"callgrind\"; expected \"hakmem-profile\")"),
            (json.dumps(dict(good, version=2)),
             "p.json: profile version 2 is not supported (this hakgen reads version 1)"),
            (json.dumps(dict(good, version="1")),
             "p.json: profile version \"1\" is not supported (this hakgen reads version 1)"),
            (json.dumps({k: v for k, v in good.items() if k != "classes"}),
             "p.json: classes: missing"),
            (json.dumps(dict(good, size_histogram=[[64, 10], [24, 3]])),
             "p.json: size_histogram[1]: 24 is not a multiple of 16"),
            (json.dumps(dict(good, size_histogram=[[64, 10], [48, 3]])),
             "p.json: size_histogram[1]: 48 does not follow 64 (keys must increase)"),
            (json.dumps(dict(good, size_histogram=[[64, -1]])),
             "p.json: size_histogram[0] count: -1 is below 0"),
            (json.dumps(dict(good, size_histogram=[[64, "x"]])),
             "p.json: size_histogram[0] count: \"x\" is not an integer"),
            (json.dumps(dict(good, size_histogram=[])),
             "p.json: no malloc requests up to the largest class: nothing to tune"),
            (json.dumps(dict(good, size_histogram=[[0, 0], [64, 0]])),
             "p.json: no malloc requests up to the largest class: nothing to tune"),
            (json.dumps(dict(good, cross_thread_free_share=1.5)),
             "p.json: cross_thread_free_share: 1.5 is not a number in 0..1"),
            (json.dumps(dict(good, classes=[dict(good["classes"][0], alloc_bursts=[[3, 1]])])),
             "p.json: classes[0].alloc_bursts[0]: 3 is not a power of two"),
            (json.dumps(dict(good, classes=[{"size": 16}])),
             "p.json: classes[0].allocs: missing"),
            (json.dumps(dict(good, classes=good["classes"][:3])),
             "p.json: size_histogram: size 64 is above the profiled spec's largest class 48"),
            # a list entry per 16 bytes up to the largest class: 2^64 B was a MemoryError
            (json.dumps(dict(good, classes=good["classes"] + [dict(
                good["classes"][0], size=18446744073709551600)])),
             "p.json: classes[40].size: 18446744073709551600 is above 1048576, the largest "
             "class size a spec can have"),
            (json.dumps(dict(good, classes=good["classes"] + [dict(
                good["classes"][0], size=resolve.MAX_CLASS_SIZE + 16)])),
             "p.json: classes[40].size: 1048592 is above 1048576, the largest class size a "
             "spec can have"),
            (json.dumps(dict(good, size_histogram=[[64, 10], [1 << 40, 1]], classes=[])),
             "p.json: size_histogram[1]: 1099511627776 is above 1048576, the largest class "
             "size a spec can have"),
            (json.dumps(dict(good, version=True)),
             "p.json: profile version true is not supported (this hakgen reads version 1)"),
            ('{"format": "hakmem-profile", "version": 1, "threads": ' + "9" * 5000 + "}",
             "p.json: malformed JSON: Exceeds the limit (4300 digits) for integer string "
             "conversion: value has 5000 digits"),
            (json.dumps(dict(good, threads=10 ** 400)),
             "p.json: threads: " + "1" + "0" * 39 + " is above 18446744073709551615"),
            (json.dumps(dict(good, classes=[dict(good["classes"][0],
                                                 alloc_bursts=[[1, 2 ** 64]])])),
             "p.json: classes[0].alloc_bursts[0] count: 18446744073709551616 is above "
             "18446744073709551615"),
            # the name and hash go into the overlay's comments: a newline would start YAML
            (json.dumps(dict(good, spec={"name": "x\noptions: {free_check: trusted}\n#",
                                         "hash": "0123456789abcdef"})),
             "p.json: spec.name: \"x\\noptions: {free_check: trusted}\\n#\" is not a spec "
             "name"),
            (json.dumps(dict(good, spec={"name": "x", "hash": "0123\n"})),
             "p.json: spec.hash: \"0123\\n\" is not a spec hash"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                self.write("p.json", text)
                self.assertProfileError(self.tune("p.json", "-o", "t.yaml"), message)
                self.assertFalse(os.path.exists(os.path.join(self.tmp, "t.yaml")))

    def test_profile_file_name_stays_in_its_comment(self):
        self.write("p\nbase: x\n#.json", json.dumps(profile({64: 10})))
        self.assertOk(self.tune("p\nbase: x\n#.json", "-o", "t.yaml"))
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            first = f.readline()
        self.assertEqual(first, "# Tuned by `gen/hakgen tune` from the profile "
                                "p\\nbase: x\\n#.json\n")

    def test_file_and_output_errors(self):
        self.assertProfileError(self.tune("nope.json", "-o", "t.yaml"),
                                "nope.json: no such file")
        self.write("p.json", json.dumps(profile({64: 10})))
        self.assertProfileError(self.tune("p.json", "-o", "t.json"),
                                "t.json: the output must be NAME.yaml, NAME (the variant's "
                                "name) made of letters, digits, '_', '-', '.'")
        proc = self.hakgen("tune", "p.json", "-o", "t.yaml", "--base", "missing.yaml")
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(proc.returncode, 2)
        self.assertRegex(proc.stderr, r"^missing\.yaml:0: \(file\): no such file\n$")
        os.makedirs(os.path.join(self.tmp, "d.yaml"))
        self.assertProfileError(self.tune("p.json", "-o", "d.yaml"),
                                "d.yaml: cannot write: Is a directory")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "d.yaml.tmp")))
        # a file where a directory must be: os.makedirs said "File exists"
        for out in ("p.json/t.yaml", "p.json/sub/t.yaml"):
            self.assertProfileError(self.tune("p.json", "-o", out),
                                    f"{out}: cannot write: p.json is not a directory")
        proc = self.hakgen("tune", "p.json")  # argparse: -o is required
        self.assertEqual(proc.returncode, 2)
        self.assertIn("-o", proc.stderr)

    def test_memory_fields_in_the_overlay(self):
        big = profile({64: 10, 4096: 10 ** 8}, peak={4096: 8192}, large=[(1048575, 2)])
        self.write_profile(big)
        self.assertOk(self.tune("p.json", "-o", "t.yaml"))
        _, r = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        self.assertEqual((r["superslab"]["huge_pages"], r["large"]["cache_bytes"]),
                         (True, 2 << 20))
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            text = f.read()
        self.assertRegex(text, r"\n  huge_pages: true  # the heap peaked at 32\.\d MiB ")
        self.assertIn("\n  cache_bytes: 2MiB  # two spans of the largest request", text)
        self.assertOk(self.tune("p.json", "-o", "off.yaml", "--huge-pages", "off"))
        _, r = tuned_sizes(os.path.join(self.tmp, "off.yaml"))
        self.assertFalse(r["superslab"]["huge_pages"])
        self.write_profile(profile({64: 10}))
        self.assertOk(self.tune("p.json", "-o", "small.yaml"))
        _, r = tuned_sizes(os.path.join(self.tmp, "small.yaml"))
        self.assertEqual((r["superslab"]["huge_pages"], r["large"]["cache_bytes"]), (False, 0))
        proc = self.tune("p.json", "-o", "bad.yaml", "--huge-pages", "maybe")
        self.assertEqual(proc.returncode, 2)

    def test_requests_beyond_the_base_classes(self):
        # a profile of a spec whose classes go past the base's 256 KiB: the base's fit
        # leaves those requests out (they are large blocks there), the tuned classes keep
        # the largest request (it was a StopIteration traceback)
        p = profile({64: 10})
        p["size_histogram"].append([327680, 3])
        p["classes"].append({"size": 327680, "allocs": 3, "frees": 3, "peak_out": 3,
                             "remote_frees": 0, "alloc_bursts": [[1, 3]], "free_bursts": [[1, 3]]})
        self.write_profile(p)
        self.assertOk(self.tune("p.json", "-o", "t.yaml"))
        sizes, _ = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        self.assertEqual(sizes[-1], 327680)
        self.assertIn(64, sizes)
        self.assertEqual(tune.waste({48: 2, 327680: 3}, [64, 128]), 32)

    def test_output_never_replaces_a_file_of_the_base(self):
        # the overlay written over its own base (or a base under it) made it an overlay on
        # itself, exit 0, and every spec built on that file a cycle
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            base_text = f.read()
        self.write("b.yaml", base_text)
        self.write("v.yaml", "base: b.yaml\n")
        self.write_profile(profile({64: 10}))
        cases = [
            (("-o", "b.yaml", "--base", "b.yaml"),
             "b.yaml: -o: would overwrite b.yaml, the base spec, making the overlay its own "
             "base; nothing written"),
            (("-o", "b.yaml", "--base", "v.yaml"),
             "b.yaml: -o: would overwrite b.yaml, which the base spec v.yaml is built on, "
             "making the overlay its own base; nothing written"),
            (("-o", "d/../v.yaml", "--base", "v.yaml"),  # another spelling of the same file
             "d/../v.yaml: -o: would overwrite v.yaml, the base spec, making the overlay its "
             "own base; nothing written"),
        ]
        os.makedirs(os.path.join(self.tmp, "d"))
        for args, message in cases:
            with self.subTest(args=args):
                self.assertSpecError(self.hakgen("tune", "p.json", *args), message)
                with open(os.path.join(self.tmp, "b.yaml"), encoding="utf-8") as f:
                    self.assertEqual(f.read(), base_text)
                with open(os.path.join(self.tmp, "v.yaml"), encoding="utf-8") as f:
                    self.assertEqual(f.read(), "base: b.yaml\n")
                self.assertEqual(sorted(os.listdir(self.tmp)), ["b.yaml", "d", "p.json", "v.yaml"])

    def test_output_never_replaces_the_profile(self):
        # a profile that happens to be named NAME.yaml was replaced by the overlay tuned from it
        text = self.write_profile(profile({64: 10}), name="p.yaml")
        with open(text, encoding="utf-8") as f:
            before = f.read()
        self.assertSpecError(self.tune("p.yaml", "-o", "p.yaml"),
                             "p.yaml: -o: would overwrite the profile p.yaml; nothing written")
        with open(text, encoding="utf-8") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["p.yaml"])

    def test_base_relative_to_the_real_directory_and_hash_of_what_was_written(self):
        # -o through a symlinked directory: `base: ../b.yaml` was written relative to the
        # link's directory, but the kernel climbs out of where the link leads, so the
        # overlay written (exit 0, a hash printed) named a base that does not exist
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            self.write("b.yaml", f.read())
        os.makedirs(os.path.join(self.tmp, "real", "sub"))
        os.symlink(os.path.join("real", "sub"), os.path.join(self.tmp, "link"))
        self.write_profile(profile({64: 10}))
        out = self.assertOk(self.hakgen("tune", "p.json", "-o", "link/t.yaml", "--base", "b.yaml"))
        with open(os.path.join(self.tmp, "real", "sub", "t.yaml"), encoding="utf-8") as f:
            self.assertIn("\nbase: ../../b.yaml\n", f.read())
        valid = self.assertOk(self.hakgen("validate", "link/t.yaml"))
        self.assertRegex(valid, r"^link/t\.yaml: ok: t [0-9a-f]{16}\n$")
        self.assertTrue(out.endswith("; spec t " + valid.split()[-1] + "\n"), (out, valid))

    def test_base_path_of_any_characters(self):
        # a base under a directory whose name YAML or re.sub would read otherwise: tune
        # crashed (re.error: bad escape \u) where json.dumps escaped a non-ASCII character
        # for re.sub's replacement, said its own overlay "does not validate" where a
        # backslash lost its escape there, and wrote a character beyond U+FFFF as two
        # surrogate escapes, which YAML reads as two characters (another path)
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            base_text = f.read()
        self.write_profile(profile({64: 10}))
        names = ["back\\slash \"quoted\" \\u0041", "\u00e9\U0001F600 \u2028\u0085 tab\t",
                 os.fsdecode(b"not utf-8 \xff")]
        for i, name in enumerate(names):
            with self.subTest(name=name):
                base = os.path.join(name, "b.yaml")
                self.write(base, base_text)
                out = f"t{i}.yaml"
                self.assertOk(self.hakgen("tune", "p.json", "-o", out, "--base", base))
                with open(os.path.join(self.tmp, out), encoding="utf-8") as f:
                    written = f.read()
                base_line = re.search(r"(?m)^base: .*$", written).group(0)
                self.assertEqual(base_line, "base: " + tune.yaml_quoted(base))
                self.assertEqual(yaml.safe_load(base_line)["base"], base)
                valid = self.assertOk(self.hakgen("validate", out))
                self.assertRegex(valid, rf"^t{i}\.yaml: ok: t{i} [0-9a-f]{{16}}\n$")

    def test_yaml_quoted_reads_back(self):
        every = "".join(chr(c) for c in range(1, 0x3000)) + "\ud800\udcff\ufeff\ufffe\uffff\U0010FFFD"
        self.assertEqual(yaml.safe_load("k: " + tune.yaml_quoted(every))["k"], every)
        self.assertEqual(tune.yaml_quoted('a"b\\c\u2028'), '"a\\"b\\\\c\\u2028"')

    def test_classes_no_smaller_than_the_base_slab_allows(self):
        # a span holds at most 4096 blocks: with 128 KiB slabs no class below 32 B, with
        # 1 MiB ones none below 256 B.  tune chose 16 B there, and its own overlay failed
        # validation ("size 16 puts 8192 blocks in a 131072-byte span").
        base = ("schema: 1\nname: small\nsuperslab: { bytes: 4MiB, slab_bytes: 128KiB }\n"
                "tiny:\n  tiers: [ring, slab]\n  classes: [{ size: 32 }, { size: 64 }, "
                "{ size: 128 }]\nmid: { tiers: [ring, slab], ring: 16, refill: 8, "
                "classes: [256, 512] }\nlarge: { cache_bytes: 0 }\noptions: { metrics: "
                "false, free_check: guarded, decay_ms: 1000 }\n")
        self.write("small.yaml", base)
        self.write("big.yaml", base.replace("bytes: 4MiB, slab_bytes: 128KiB",
                                            "bytes: 8MiB, slab_bytes: 1MiB").replace(
            "[{ size: 32 }, { size: 64 }, { size: 128 }]", "[{ size: 256 }]").replace(
            "classes: [256, 512]", "classes: [512, 1024]"))
        pclass = {"allocs": 10, "frees": 10, "peak_out": 64, "remote_frees": 0,
                  "alloc_bursts": [[1, 10]], "free_bursts": [[1, 10]]}
        self.write_profile({
            "format": "hakmem-profile", "version": 1,
            "spec": {"name": "metrics", "hash": "0123456789abcdef"}, "threads": 1,
            "cross_thread_free_share": 0.0, "size_histogram": [[16, 1000], [48, 100], [512, 5]],
            "large_histogram": [], "classes": [dict(pclass, size=32), dict(pclass, size=64),
                                               dict(pclass, size=512)]})
        for base_name, first in (("small.yaml", 32), ("big.yaml", 256)):
            with self.subTest(base=base_name):
                self.assertOk(self.hakgen("tune", "p.json", "-o", "t.yaml", "--base", base_name,
                                          "--max-classes", "8"))
                sizes, _ = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
                self.assertEqual(sizes[0], first)
                with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
                    self.assertIn(f"(the first at most {max(first, 32)} B)", f.read())
        self.assertSpecError(
            self.hakgen("tune", "p.json", "-o", "t2.yaml", "--base", "big.yaml",
                        "--max-classes", "2"),
            "--max-classes: 2 is too few: 3 classes are needed to cover 256..1024 B with each "
            "class at most twice the one before it")

    def test_grid_base_keeps_its_grid_and_lists(self):
        """The default's 64 tiny classes, every 16 B, stay (malloc finds them by
        arithmetic, and no class rounds less); the mid classes are chosen; every class
        keeps the base's kind of first tier, a list."""
        hist = {32: 10_000, 48: 5000, 528: 4000, 1040: 2000, 1200: 700, 4112: 1000}
        bursts = {32: ([[1, 100], [1024, 50]], [[1, 100], [1024, 50]]),  # past 128 blocks
                  48: ([[64, 100]], [[64, 100]])}                      # within
        self.write_profile(profile(hist, bursts, peak={32: 100_000, 48: 5000, 640: 3000,
                                                       1280: 900}))
        self.assertOk(self.tune("p.json", "-o", "t.yaml"))
        path = os.path.join(self.tmp, "t.yaml")
        sizes, r = tuned_sizes(path)
        tiny = {c["size"]: c for c in r["tiny"]["classes"]}
        self.assertEqual(sorted(tiny), list(range(16, 1025, 16)))
        self.assertEqual(resolve.model(r, path)["size_grid"], 1024)
        self.assertEqual(len(sizes), 96)  # the base's count: 32 mid classes
        self.assertTrue({1040, 1200, 4112} <= set(r["mid"]["classes"]))
        self.assertEqual(r["mid"]["classes"][-1], 262144)
        self.assertTrue(all(c["tiers"] == ["sll", "slab"] for c in tiny.values()))
        self.assertEqual((tiny[32]["sll"], tiny[32]["refill"]), (2048, 64))  # raised
        self.assertEqual((tiny[48]["sll"], tiny[48]["refill"]), (256, 64))   # the base's
        self.assertEqual((tiny[528]["sll"], tiny[528]["refill"]), (128, 16))
        self.assertEqual(tiny[48]["transfer"], 0)  # a single thread: none
        # a class no request reached is the base's, transfer cache and all
        base = {c["size"]: c
                for c in resolve.resolve(load_spec(DEFAULT_SPEC))["tiny"]["classes"]}
        self.assertEqual(tiny[400], base[400])
        self.assertEqual(tiny[400]["transfer"], 32)
        self.assertEqual((r["mid"]["tiers"], r["mid"]["sll"], r["mid"]["refill"]),
                         (["sll", "slab"], 64, 16))
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("(64 tiny, 32 mid; at most 96): the base's 64 tiny classes,\n# every "
                      "16 B up to 1024 B, kept (no class rounds a size less, and malloc finds "
                      "them by arithmetic);\n# the mid classes chosen by dynamic programming",
                      text)
        self.assertIn("# List-first classes (as the base's that served their sizes)", text)
        self.assertNotIn("Ring-first", text)
        self.assertIn("# Classes of the grid no request was seen in keep the base's caches.",
                      text)
        self.assertRegex(text, r"\{ size: 400, sll: 128, refill: 16, transfer: 32, "
                               r"tiers: \[sll, slab\] \} +# 385\.\.400 B: no requests seen "
                               r"\(the base's caches\)\n")
        self.assertRegex(text, r"size: 32, sll: 2048, .*: 44\.1% of requests, p99 burst 2047, "
                               r"peak 100,000 out; \d+\.\d% of ops beyond half the base's list "
                               r"of 256: raised to the p99 burst\n")
        self.assertIn("33..48 B: 22.0% of requests, p99 burst 127, peak 5,000 out; 0.0% of ops "
                      "beyond half the base's list of 256: kept\n", text)

    def test_grid_dropped_when_too_few_classes(self):
        # 72 classes keep the grid (64, then doubling to 256 KiB); 71 cannot: every class
        # is chosen, still list-first as the base's
        self.write_profile(profile({32: 500, 48: 300, 144: 200, 4112: 5}))
        for k, grid in (("72", True), ("71", False), ("20", False)):
            with self.subTest(max_classes=k):
                self.assertOk(self.tune("p.json", "-o", "t.yaml", "--max-classes", k))
                path = os.path.join(self.tmp, "t.yaml")
                sizes, r = tuned_sizes(path)
                self.assertLessEqual(len(sizes), int(k))
                self.assertEqual(resolve.model(r, path)["size_grid"] == 1024, grid)
                self.assertTrue(all(c["tiers"] == ["sll", "slab"]
                                    for c in r["tiny"]["classes"]))
                with open(path, encoding="utf-8") as f:
                    self.assertEqual("the base's 64 tiny classes" in f.read(), grid)

    def test_no_cache_where_the_base_has_none(self):
        """A base class, or mid tier, with no cache gets none: a ring made up for it gave
        the tiny classes two kinds of first tier, which turned the grid's arithmetic off."""
        self.write("b.yaml", f"base: {json.dumps(DEFAULT_SPEC)}\nmid: {{tiers: [slab]}}\n")
        hist = {32: 500, 48: 300, 528: 200, 4112: 50}
        self.write_profile(profile(hist))
        self.assertOk(self.hakgen("tune", "p.json", "-o", "t.yaml", "--base", "b.yaml"))
        path = os.path.join(self.tmp, "t.yaml")
        _, r = tuned_sizes(path)
        self.assertEqual((r["mid"]["tiers"], r["mid"]["ring"], r["mid"]["sll"]),
                         (["slab"], 0, 0))
        self.assertEqual(resolve.model(r, path)["size_grid"], 1024)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("mid:\n  tiers: [slab]  # no cache, as the base's mid classes\n"
                      "  refill: 0\n", text)
        self.assertIn("and malloc finds them by arithmetic", text)
        # the nocache variant: its 16 B and 1024 B classes and the mid ones have no cache
        self.assertOk(self.hakgen("tune", "p.json", "-o", "n.yaml", "--base",
                                  os.path.join(VARIANTS, "nocache.yaml")))
        path = os.path.join(self.tmp, "n.yaml")
        _, r = tuned_sizes(path)
        tiny = {c["size"]: c for c in r["tiny"]["classes"]}
        self.assertEqual(sorted(tiny), list(range(16, 1025, 16)))
        self.assertEqual([s for s, c in tiny.items() if c["tiers"] == ["slab"]], [16, 1024])
        self.assertEqual(tiny[32]["tiers"], ["sll", "slab"])
        self.assertEqual(r["mid"]["tiers"], ["slab"])
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn("Ring-first", text)
        self.assertIn("# Classes whose base class has no cache have none either.\n", text)
        # the base's table front serves two kinds of class (a cache or none): no arithmetic
        self.assertEqual(resolve.model(resolve.resolve(load_spec(
            os.path.join(VARIANTS, "nocache.yaml"))), "n")["size_grid"], 0)
        self.assertIn("kept (no class rounds a size less);\n", text)

    def test_prewarm_of_the_base_kept(self):
        # prewarm 32 on every tiny class: kept on the classes requests reached too, within
        # the tuned list (a class with 10 blocks out at the peak: a list of 16)
        self.write_profile(profile({32: 10_000, 64: 10}, peak={32: 5000, 64: 10}))
        self.assertOk(self.hakgen("tune", "p.json", "-o", "t.yaml", "--base",
                                  os.path.join(VARIANTS, "prewarm.yaml")))
        _, r = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        tiny = {c["size"]: c for c in r["tiny"]["classes"]}
        self.assertEqual([tiny[s]["prewarm"] for s in (16, 32, 64, 1024)], [32, 32, 16, 32])
        self.assertEqual(tiny[64]["sll"], 16)
        with open(os.path.join(self.tmp, "t.yaml")) as f:
            self.assertIn("# A base class's prewarm is kept, within the tuned capacity.\n",
                          f.read())

    def test_no_prewarm_line_without_prewarm(self):
        # the header says a prewarm was kept only where the base had one to keep
        self.write_profile(profile({32: 10_000, 64: 10}, peak={32: 5000, 64: 10}))
        self.assertOk(self.hakgen("tune", "p.json", "-o", "t.yaml"))
        with open(os.path.join(self.tmp, "t.yaml")) as f:
            text = f.read()
        self.assertNotIn("prewarm", text)
        self.assertIn("# List-first classes", text)

    def test_mid_classes_start_with_the_base_tier(self):
        # the tuned mid classes share one cache of the kind the base's start with.  A base
        # whose mid classes start with a 2-block list keeps it (a ring-first tuner wrote
        # refill 4 over it, which failed validation: the refill is at most the list)
        self.write("b.yaml", f"base: {json.dumps(DEFAULT_SPEC)}\n"
                             "mid: {tiers: [sll, slab], sll: 2, refill: 1}\n")
        self.write_profile(profile({64: 10, 4096: 10}))
        self.assertOk(self.hakgen("tune", "p.json", "-o", "t.yaml", "--base", "b.yaml"))
        _, r = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        self.assertEqual((r["mid"]["tiers"], r["mid"]["sll"], r["mid"]["refill"]),
                         (["sll", "slab"], 2, 1))
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("mid:\n  tiers: [sll, slab]  # list first, as the base's mid classes\n"
                      "  sll: 2   # shared by the mid classes: p99 burst 1, 50.0% of requests; "
                      "0.0% of ops beyond half the base's list of 2: kept\n  refill: 1\n", text)
        # 64 B: 10 blocks out at the peak, so a list of 16 (the base's 256 capped)
        self.assertIn("{ size: 64, sll: 16, refill: 8, tiers: [sll, slab] }", text)
        self.assertIn("peak 10 out; 0.0% of ops beyond half the base's list of 256: kept, "
                      "capped at the peak out\n", text)
        # the ring spec's mid classes start with a ring: one ring, from the bursts
        self.assertOk(self.hakgen("tune", "p.json", "-o", "t2.yaml", "--base", RING_SPEC))
        _, r = tuned_sizes(os.path.join(self.tmp, "t2.yaml"))
        self.assertEqual((r["mid"]["tiers"], r["mid"]["ring"], r["mid"]["refill"]),
                         (["ring", "slab"], 8, 4))

    def test_tiny_mid_split_and_caches(self):
        hist = {32: 10_000, 528: 4000, 1040: 2000, 4112: 1000}
        bursts = {32: ([[64, 100]], [[64, 100]]),          # long bursts: a big ring
                  640: ([[1, 4000]], [[1, 4000]])}          # 528 B comes from 640: short
        self.write_profile(profile(hist, bursts, peak={32: 5000, 640: 3000}))
        self.assertOk(self.tune_ring("p.json", "-o", "t.yaml"))
        _, r = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        tiny = {c["size"]: c for c in r["tiny"]["classes"]}
        self.assertEqual(max(tiny), 1024 if 1024 in tiny else max(tiny))
        self.assertTrue(all(s <= 1024 for s in tiny))
        self.assertTrue(all(s > max(tiny) for s in r["mid"]["classes"]))
        self.assertEqual((tiny[32]["ring"], tiny[32]["refill"]), (256, 128))
        self.assertEqual(tiny[32]["tiers"], ["ring", "slab"])
        self.assertEqual((tiny[528]["ring"], tiny[528]["refill"]), (8, 4))

    def test_transfer_only_where_frees_crossed_threads(self):
        hist = {32: 10_000, 528: 4000, 1040: 2000, 4112: 1000}
        bursts = {32: ([[64, 100]], [[64, 100]]), 640: ([[1, 4000]], [[1, 4000]])}
        # 32 B: 30% of its frees by another thread; 528 B (class 640): 0.5%, below the bar
        self.write_profile(profile(hist, bursts, peak={32: 5000, 640: 3000}, threads=2,
                                   remote={32: 3000, 640: 20}))
        self.assertOk(self.tune_ring("p.json", "-o", "t.yaml"))
        _, r = tuned_sizes(os.path.join(self.tmp, "t.yaml"))
        tiny = {c["size"]: c for c in r["tiny"]["classes"]}
        self.assertEqual(tiny[32]["refill"], 128)
        self.assertEqual(tiny[32]["transfer"], tune.TRANSFER_BLOCKS // 128)  # 4 batches
        self.assertEqual(tiny[528]["transfer"], 0)
        self.assertEqual(r["mid"]["transfer"], 4)  # the base's
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("transfer: 4, tiers: [ring, slab] }", text)
        self.assertIn("30.0% remote frees", text)
        self.assertEqual(tune.transfer_batches(16), 32)
        self.assertEqual(tune.transfer_batches(1024), 1)

    def test_no_transfer_where_the_runtime_would_not_use_it(self):
        # long bursts keep the sll with ring 256, refill 128: a list last tier gives no batch
        # above 64 blocks (resolve.moves_batches), so "transfer: 4" was written and resolved 0
        bursts = {32: ([[1, 100], [1024, 50]], [[1, 100], [1024, 50]])}
        self.write_profile(profile({32: 10_000}, bursts, peak={32: 100_000}, threads=2,
                                   remote={32: 3000}))
        self.assertOk(self.tune_ring("p.json", "-o", "t.yaml", "--max-classes", "11"))
        with open(os.path.join(self.tmp, "t.yaml"), encoding="utf-8") as f:
            entry = next(ln for ln in f if "size: 32," in ln)
        self.assertIn("{ size: 32, ring: 256, sll: 2048, refill: 128, tiers: [ring, sll, slab] }",
                      entry)
        self.assertIn("30.0% remote frees (no transfer cache: the runtime would not use one "
                      "with these caches)", entry)
        # a base with decay_ms 0 has no transfer caches: none written, list- or ring-first
        # (the default's grid classes no request reached keep its caches, with transfer 0)
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            self.write("b.yaml", f.read().replace("decay_ms: 1000", "decay_ms: 0"))
        self.write("r.yaml", f"base: {json.dumps(RING_SPEC)}\noptions: {{decay_ms: 0}}\n")
        self.write_profile(profile({32: 10_000}, threads=2, remote={32: 3000}))
        for base, first in (("b.yaml", "sll"), ("r.yaml", "ring")):
            with self.subTest(base=base):
                self.assertOk(self.hakgen("tune", "p.json", "-o", "t0.yaml", "--base", base))
                with open(os.path.join(self.tmp, "t0.yaml"), encoding="utf-8") as f:
                    text = f.read()
                self.assertNotIn("transfer:", text)
                self.assertIn(f"{{ size: 32, {first}: ", text)
                self.assertIn("30.0% remote frees (no transfer cache", text)


if __name__ == "__main__":
    unittest.main()
