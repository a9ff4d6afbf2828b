"""Pass 1: the shape of a spec file. Unknown keys, wrong types, bad units.

Each field type checks one Node and returns its value in canonical form (byte
sizes as integers).  Ranges that depend on other fields are pass 2's job
(resolve.py).
"""
import re

from specload import Node

TIER_NAMES = ("ring", "sll", "slab")
_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_BYTES_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")


class Int:
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def check(self, node, field):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            raise node.error(field, f"expected an integer, got {_show(v)}")
        if not self.lo <= v <= self.hi:
            raise node.error(field, f"{v} is out of range {self.lo}..{self.hi}")
        return Node(v, node.file, node.line)


class Bytes(Int):
    """An integer number of bytes, or a string such as 64KiB or 2MiB."""

    def check(self, node, field):
        v = node.value
        if isinstance(v, str):
            m = _BYTES_RE.match(v)
            if not m:
                raise node.error(field, f"expected a byte size such as 65536 or 64KiB, got {v!r}")
            if len(m.group(1)) > 30:  # int() refuses thousands of digits; this is far out anyway
                raise node.error(field, f"{v.strip()[:30]}... is out of range {self.lo}..{self.hi}")
            v = int(m.group(1)) * _UNITS[m.group(2) or ""]
        return Int.check(self, Node(v, node.file, node.line), field)


class Version(Int):
    """The schema number: one this generator reads."""

    def check(self, node, field):
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool) and not self.lo <= v <= self.hi:
            raise node.error(field, f"schema {v} is not supported (this generator reads schema "
                             f"{self.hi})")
        return Int.check(self, node, field)


class Bool:
    def check(self, node, field):
        if not isinstance(node.value, bool):
            raise node.error(field, f"expected true or false, got {_show(node.value)}")
        return node


class Enum:
    def __init__(self, *choices):
        self.choices = choices

    def check(self, node, field):
        if node.value not in self.choices:
            raise node.error(field, f"expected one of {', '.join(self.choices)}, got {_show(node.value)}")
        return node


class Name:
    """An identifier usable in a path and a C string: [A-Za-z0-9_-]."""

    def check(self, node, field):
        v = node.value
        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise node.error(field, f"expected a name of letters, digits, '_', '-', '.', got {_show(v)}")
        return node


class Path:
    def check(self, node, field):
        if not isinstance(node.value, str) or not node.value:
            raise node.error(field, f"expected a file path, got {_show(node.value)}")
        return node


class Tiers:
    """An ordered list of tier names: no unknown, no repeat, slab last."""

    def check(self, node, field):
        if not isinstance(node.value, list) or not node.value:
            raise node.error(field, f"expected a non-empty list of tiers from {', '.join(TIER_NAMES)}")
        seen = []
        for item in node.value:
            if not isinstance(item, Node):  # already checked (a merged spec)
                item = Node(item, node.file, node.line)
            name = item.value
            if name not in TIER_NAMES:
                raise item.error(field, f"unknown tier {_show(name)} (known: {', '.join(TIER_NAMES)})")
            if name in seen:
                raise item.error(field, f"tier '{name}' is repeated")
            seen.append(name)
        if seen[-1] != "slab":
            raise node.error(field, "the last tier must be 'slab' (the runtime behind the caches)")
        return Node(seen, node.file, node.line)


class List:
    def __init__(self, item):
        self.item = item

    def check(self, node, field):
        if not isinstance(node.value, list):
            raise node.error(field, f"expected a list, got {_show(node.value)}")
        return Node([self.item.check(n, f"{field}[{i}]") for i, n in enumerate(node.value)],
                    node.file, node.line)


class Map:
    """A mapping with known keys. `required` keys must be present (full specs)."""

    def __init__(self, fields, required=()):
        self.fields, self.required = fields, tuple(required)

    def check(self, node, field, partial=False):
        if not isinstance(node.value, dict):
            raise node.error(field or "(spec)", f"expected a mapping, got {_show(node.value)}")
        out = {}
        for key, child in node.value.items():
            sub = f"{field}.{key}" if field else str(key)
            if key not in self.fields:
                raise child.error(sub, f"unknown key (known: {', '.join(sorted(self.fields))})")
            kind = self.fields[key]
            out[key] = kind.check(child, sub, partial) if isinstance(kind, (Map, ClassPatches)) \
                else kind.check(child, sub)
        if not partial:
            for key in self.required:
                if key not in out:
                    raise node.error(f"{field}.{key}" if field else key, "missing required field")
        return Node(out, node.file, node.line)


def _class_fields():
    return {
        "size": Int(1, 1 << 30),
        "ring": Int(0, 1 << 20),
        "sll": Int(0, 1 << 20),
        "refill": Int(0, 1 << 20),
        "prewarm": Int(0, 1 << 20),
        "transfer": Int(0, 1 << 20),
        "tiers": Tiers(),
    }


TINY_CLASS = Map(_class_fields(), required=("size",))
CLASS_PATCH = Map({k: v for k, v in _class_fields().items() if k != "size"})


class ClassPatches:
    """tiny.classes: a full list in a base spec, or in an overlay a mapping
    {size: patch or null} that edits, adds (with ring/sll/...) or removes classes."""

    def check(self, node, field, partial=False):
        if isinstance(node.value, list):
            return Node([TINY_CLASS.check(n, f"{field}[{i}]") for i, n in enumerate(node.value)],
                        node.file, node.line)
        if partial and isinstance(node.value, dict):
            out = {}
            for size, patch in node.value.items():
                if isinstance(size, bool) or not isinstance(size, int):
                    raise patch.error(f"{field}.{size}", "class patches are keyed by size in bytes")
                out[size] = patch if patch.value is None else CLASS_PATCH.check(patch, f"{field}.{size}")
            return Node(out, node.file, node.line)
        raise node.error(field, "expected a list of classes" +
                         (" or a mapping {size: patch}" if partial else ""))


SPEC = Map({
    "schema": Version(1, 1),
    "name": Name(),
    "base": Path(),
    "superslab": Map({"bytes": Bytes(1 << 16, 1 << 30), "slab_bytes": Bytes(1 << 12, 1 << 28),
                      "huge_pages": Bool()},
                     required=("bytes", "slab_bytes")),
    "tiny": Map({"tiers": Tiers(), "all": CLASS_PATCH, "classes": ClassPatches()},
                required=("tiers", "classes")),
    "mid": Map({"tiers": Tiers(), "ring": Int(0, 1 << 20), "sll": Int(0, 1 << 20),
                "refill": Int(0, 1 << 20), "transfer": Int(0, 1 << 20),
                "class_cache_bytes": Bytes(0, 1 << 40), "classes": List(Int(1, 1 << 30))},
               required=("tiers", "refill", "classes")),
    "large": Map({"cache_bytes": Bytes(0, 1 << 40)}, required=("cache_bytes",)),
    "options": Map({"metrics": Bool(), "free_check": Enum("guarded", "trusted"),
                    "dispatch": Enum("table", "switch"),
                    "tls": Enum("pointer", "static"),
                    "stride_pad": Bool(),
                    "decay_ms": Int(0, 3_600_000)},
                   required=("metrics", "free_check", "decay_ms")),
}, required=("schema", "name", "superslab", "tiny", "mid", "large", "options"))


def _show(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return "a mapping" if isinstance(v, dict) else "a list"
    return repr(v)
