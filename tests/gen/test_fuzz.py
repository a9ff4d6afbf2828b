"""Random mutations of the default spec (and random overlays on it): each one is
either valid (and renders) or exits 2 with one FILE:LINE: field: message line;
never a traceback.  Fixed seeds: a failure names the case to reproduce."""
import os
import random
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import DEFAULT_SPEC, TempDirTest, hakgen_inprocess, load_hakgen  # noqa: E402

import render  # noqa: E402
import resolve  # noqa: E402
from overlay import load_spec  # noqa: E402

ODD_VALUES = ["x", "64 KiB", "", True, False, None, 1.5, -1, 0, [], {}, [1, "a"], {"k": 1},
              "2MiB", "ring", "guarded", 2 ** 40]
ODD_NUMBERS = [0, 1, 2, 3, 15, 16, 17, 24, 31, 63, 64, 65, 255, 256, 4095, 4096, 4097,
               65535, 65536, 65537, 1 << 20, (1 << 20) + 1, 2097152, -16]


def _paths(tree, prefix=()):
    """Every (path, value) in a plain YAML tree, containers included."""
    yield prefix, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


def _set(tree, path, value):
    for step in path[:-1]:
        tree = tree[step]
    tree[path[-1]] = value


def _get(tree, path):
    for step in path:
        tree = tree[step]
    return tree


def mutate(rng, tree):
    """Apply one random mutation to `tree` in place; return a description."""
    kind = rng.choice(["delete", "number", "number", "type", "swap", "unknown", "duplicate"])
    paths = [p for p, _ in _paths(tree) if p]
    if kind == "delete":
        keyed = [p for p in paths if isinstance(_get(tree, p[:-1]), (dict, list))]
        p = rng.choice(keyed)
        del _get(tree, p[:-1])[p[-1]]
        return f"delete {p}"
    if kind == "number":
        numbers = [p for p in paths if type(_get(tree, p)) is int]
        p = rng.choice(numbers)
        old = _get(tree, p)
        new = rng.choice(ODD_NUMBERS + [old * 2, old // 2, old + 16, old - 16])
        _set(tree, p, new)
        return f"{p}: {old} -> {new}"
    if kind == "type":
        p = rng.choice(paths)
        new = rng.choice(ODD_VALUES)
        _set(tree, p, new)
        return f"{p} = {new!r}"
    if kind == "swap":
        section = rng.choice([("tiny", "classes"), ("mid", "classes")])
        try:
            items = _get(tree, section)
        except (KeyError, TypeError, IndexError):
            return "swap: nothing to swap"
        if not isinstance(items, list) or len(items) < 2:
            return "swap: nothing to swap"
        i, j = rng.sample(range(len(items)), 2)
        items[i], items[j] = items[j], items[i]
        return f"swap {section}[{i}] and [{j}]"
    if kind == "unknown":
        maps = [p for p, v in _paths(tree) if isinstance(v, dict)]
        p = rng.choice(maps)
        _get(tree, p)["bogus"] = 1
        return f"{p}.bogus = 1"
    lists = [p for p, v in _paths(tree) if isinstance(v, list) and v]
    p = rng.choice(lists)
    items = _get(tree, p)
    i = rng.randrange(len(items))
    items.insert(i, items[i])
    return f"duplicate {p}[{i}]"


def random_overlay(rng):
    """A small random overlay on the default spec (a plain dict, without base)."""
    over = {}
    fields = ["ring", "sll", "refill", "prewarm", "tiers"]

    def patch():
        out = {}
        for f in rng.sample(fields, rng.randint(1, 3)):
            out[f] = (rng.choice([["ring", "slab"], ["sll", "slab"], ["slab"], ["sll", "ring", "slab"],
                                  ["ring"], "ring"]) if f == "tiers"
                      else rng.choice(ODD_NUMBERS + [8, 32, 128]))
        return out

    if rng.random() < 0.5:
        over.setdefault("tiny", {})["all"] = patch()
    if rng.random() < 0.6:
        classes = {}
        for _ in range(rng.randint(1, 3)):
            size = rng.choice([16, 32, 48, 56, 64, 1024, 1040, 1100, 2048])
            classes[size] = None if rng.random() < 0.3 else patch()
        over.setdefault("tiny", {})["classes"] = classes
    if rng.random() < 0.3:
        over["options"] = {rng.choice(["metrics", "free_check", "decay_ms"]):
                           rng.choice([True, "trusted", 0, 5000, "paranoid"])}
    if rng.random() < 0.3:
        over["mid"] = {rng.choice(["ring", "refill", "classes"]):
                       rng.choice([4, 16, 0, [1280, 2048], [2048], []])}
    if rng.random() < 0.2:
        over["superslab"] = {"bytes": rng.choice(["4MiB", "1MiB", "512KiB", 3 << 20])}
    return over


class FuzzTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.hakgen_module = load_hakgen()
        with open(DEFAULT_SPEC, encoding="utf-8") as f:
            self.default = yaml.safe_load(f)
        self.counts = {0: 0, 2: 0}

    def run_case(self, path, label, text):
        names = {path, DEFAULT_SPEC}
        try:
            rc, out, err = hakgen_inprocess(self.hakgen_module, "validate", path)
        except Exception as e:  # a traceback: show the case
            self.fail(f"{label}: {type(e).__name__}: {e}\n{text}")
        self.assertIn(rc, (0, 2), f"{label}\n{text}")
        self.counts[rc] += 1
        if rc == 2:
            m = re.fullmatch(r"(.+?):(\d+): ([^\n]+?): ([^\n]+)\n", err)
            self.assertIsNotNone(m, f"{label}: not a FILE:LINE: field: message line: {err!r}\n{text}")
            self.assertIn(m.group(1), names, label)
            with open(m.group(1), encoding="utf-8") as f:
                last = len(f.read().rstrip().splitlines())
            self.assertTrue(1 <= int(m.group(2)) <= last, f"{label}: line {m.group(2)} of {last}: {err}")
            self.assertEqual(out, "")
        else:
            self.assertEqual(err, "")
            try:  # a valid spec has a model; every fourth is rendered (jinja is the slow part)
                resolved = resolve.resolve(load_spec(path))
                resolve.model(resolved, path)
                if self.counts[0] % 4 == 1:
                    render.render_all(resolved, path)
            except Exception as e:
                self.fail(f"{label}: render: {type(e).__name__}: {e}\n{text}")

    def test_mutations_of_default_spec(self):
        rng = random.Random(20251125)
        path = os.path.join(self.tmp, "mutant.yaml")
        for case in range(200):
            tree = yaml.safe_load(yaml.safe_dump(self.default))
            what = [mutate(rng, tree) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
            text = yaml.safe_dump(tree, default_flow_style=rng.choice([None, False]), sort_keys=False)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            self.run_case(path, f"case {case}: {'; '.join(what)}", text)
        # the mutations are not all trivially rejected, nor all harmless
        self.assertGreater(self.counts[0], 10, self.counts)
        self.assertGreater(self.counts[2], 100, self.counts)

    def test_random_overlays(self):
        rng = random.Random(1125)
        path = os.path.join(self.tmp, "over.yaml")
        for case in range(100):
            over = dict(base=DEFAULT_SPEC, **random_overlay(rng))
            text = yaml.safe_dump(over, sort_keys=False)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            self.run_case(path, f"overlay case {case}", text)
        self.assertGreater(self.counts[0], 5, self.counts)
        self.assertGreater(self.counts[2], 30, self.counts)
