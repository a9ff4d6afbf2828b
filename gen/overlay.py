"""Variants: a spec file with `base:` is an overlay on another spec.

The overlay language (documented in spec/README.md):
  * a mapping merges key by key into the base; any other value replaces;
  * tiny.all: {field: value} sets that field on every tiny class;
  * tiny.classes as a mapping {size: patch} edits the class of that size,
    adds it when the base has none, or removes it when the patch is null;
    as a list it replaces the whole table.
Positions are kept, so an error in a merged value names the file that set it.
"""
import os

import schema
from specload import Node, SpecError, load


def load_spec(path, display=None, _chain=()):
    """Load a spec or overlay and return the merged, shape-checked Node tree."""
    name = display or path
    real = os.path.realpath(path)
    if real in _chain:
        raise SpecError(name, 0, "base", "overlays form a cycle")
    root = load(path, name)
    is_overlay = isinstance(root.value, dict) and "base" in root.value
    checked = schema.SPEC.check(root, "", partial=is_overlay)
    if is_overlay:
        base_node = checked.value["base"]
        base_path = os.path.join(os.path.dirname(path), base_node.value)
        base_display = os.path.normpath(os.path.join(os.path.dirname(name), base_node.value))
        if not os.path.exists(base_path):
            raise base_node.error("base", f"base spec {base_node.value!r} does not exist")
        merged = load_spec(base_path, base_display, _chain + (real,))
        if "name" not in checked.value:
            stem = os.path.splitext(os.path.basename(path))[0]
            checked.value["name"] = Node(stem, name, 1)
        apply_all(merged, _pop_all(checked))  # before the per-class patches, which win
        checked = merge(merged, checked)
        del checked.value["base"]
    else:
        apply_all(checked, _pop_all(checked))
    return schema.SPEC.check(checked, "", partial=False)


def merge(base, over):
    """Merge overlay `over` into `base` (both Nodes), returning a new Node."""
    if not (isinstance(base.value, dict) and isinstance(over.value, dict)):
        return over
    out = dict(base.value)
    for key, child in over.value.items():
        if key == "classes" and isinstance(child.value, dict) and key in out:
            out[key] = _patch_classes(out[key], child)
        elif key in out and key != "classes":
            out[key] = merge(out[key], child)
        else:
            out[key] = child
    return Node(out, base.file, base.line)


def _patch_classes(base_list, patches):
    by_size = {c.value["size"].value: c for c in base_list.value}
    for size, patch in sorted(patches.value.items()):
        field = f"tiny.classes.{size}"
        if patch.value is None:
            if size not in by_size:
                raise patch.error(field, f"the base has no class of size {size} to remove")
            del by_size[size]
        elif size in by_size:
            by_size[size] = merge(by_size[size], patch)
        else:
            fields = dict(patch.value)
            fields["size"] = Node(size, patch.file, patch.line)
            by_size[size] = Node(fields, patch.file, patch.line)
    return Node([by_size[s] for s in sorted(by_size)], patches.file, patches.line)


def _pop_all(spec):
    tiny = spec.value.get("tiny")
    return tiny.value.pop("all", None) if tiny is not None else None


def apply_all(spec, patch):
    """Set the fields of `patch` (tiny.all) on every class of spec's tiny table."""
    tiny = spec.value.get("tiny")
    if patch is None or tiny is None:
        return
    classes = tiny.value.get("classes")
    if classes is not None and isinstance(classes.value, list):
        classes.value = [merge(c, patch) for c in classes.value]
