"""Variants: a spec file with `base:` is an overlay on another spec.

The overlay language (documented in spec/README.md):
  * a mapping merges key by key into the base; any other value replaces;
  * tiny.all: {field: value} sets that field on every tiny class of the
    resulting table, except where the same file sets the field on the class;
  * tiny.classes as a mapping {size: patch} edits the class of that size,
    adds it (in size order) when the base has none, or removes it when the
    patch is null; as a list it replaces the whole table.
Positions are kept, so an error in a merged value names the file that set it.
"""
import os
import re

import schema
from specload import Node, SpecError, load


MAX_BASES = 64  # overlays on overlays: far more than anyone writes, far less than the stack


def load_spec(path, display=None, _chain=(), files=None):
    """Load a spec or overlay and return the merged, shape-checked Node tree.  `files`, a
    list, gets (real path, name) of every file read: the spec's, then its bases' in order."""
    name = display or path
    chain = _chain + ((os.path.realpath(path), name),)
    if files is not None:
        files.append(chain[-1])
    root = load(path, name)
    is_overlay = isinstance(root.value, dict) and "base" in root.value
    checked = schema.SPEC.check(root, "", partial=is_overlay)
    all_patch, own = _pop_all(checked), _own_fields(checked)
    if is_overlay:
        base_node = checked.value["base"]
        base_path = os.path.join(os.path.dirname(path), base_node.value)
        base_display = _display(os.path.join(os.path.dirname(name), base_node.value), base_path)
        if not os.path.isfile(base_path):
            what = "is not a file" if os.path.exists(base_path) else "does not exist"
            raise base_node.error("base", f"base spec {base_node.value!r} {what}")
        if any(os.path.realpath(base_path) == r for r, _ in chain):
            cycle = " -> ".join([n for _, n in chain] + [base_display])
            raise base_node.error("base", f"overlays form a cycle: {cycle}")
        if len(chain) >= MAX_BASES:
            raise base_node.error("base", f"more than {MAX_BASES} overlays on top of each other")
        merged = load_spec(base_path, base_display, chain, files)
        if "name" not in checked.value:
            stem = os.path.splitext(os.path.basename(path))[0]
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", stem):  # schema.Name
                raise SpecError(name, 1, "name", f"the file's name gives the name {stem!r}, "
                                "not one of letters, digits, '_', '-', '.': set name: in it")
            checked.value["name"] = Node(stem, name, 1)
        checked = merge(merged, checked)
        del checked.value["base"]
    apply_all(checked, all_patch, own)
    return schema.SPEC.check(checked, "", partial=False)


def _display(name, path):
    """The name errors give the file at path, reached as name: tidied (`a/./b`, `a/x/../b`)
    where the tidy name leads to the same file; as written where a `..` climbs out of where
    a symlinked directory leads, which the tidy name would not (it names another file)."""
    tidy = os.path.normpath(name)
    tidy_path = os.path.normpath(path)
    if tidy_path == path or os.path.realpath(tidy_path) == os.path.realpath(path):
        return tidy
    return name


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
    # The base's order is kept (not sorted), so that pass 2 still sees a bad base table.
    out = list(base_list.value)
    for size, patch in sorted(patches.value.items()):
        field = f"tiny.classes.{size}"
        at = next((i for i, c in enumerate(out) if c.value["size"].value == size), None)
        if patch.value is None:
            if at is None:
                raise patch.error(field, f"the base has no class of size {size} to remove")
            del out[at]
        elif at is not None:
            out[at] = merge(out[at], patch)
        else:
            fields = dict(patch.value)
            fields["size"] = Node(size, patch.file, patch.line)
            at = next((i for i, c in enumerate(out) if c.value["size"].value > size), len(out))
            out.insert(at, Node(fields, patch.file, patch.line))
    return Node(out, patches.file, patches.line)


def _pop_all(spec):
    tiny = spec.value.get("tiny")
    return tiny.value.pop("all", None) if tiny is not None else None


def _own_fields(spec):
    """{size: fields} that this file itself sets per class (a list entry or a patch)."""
    tiny = spec.value.get("tiny")
    classes = tiny.value.get("classes") if tiny is not None else None
    if classes is None:
        return {}
    if isinstance(classes.value, list):
        return {c.value["size"].value: set(c.value) for c in classes.value}
    return {size: set(p.value or ()) for size, p in classes.value.items()}


def apply_all(spec, patch, own):
    """Set the fields of `patch` (tiny.all) on every class of spec's tiny table, except
    the fields `own` says the same file sets on that class (those win)."""
    tiny = spec.value.get("tiny")
    if patch is None or tiny is None:
        return
    classes = tiny.value.get("classes")
    if classes is not None and isinstance(classes.value, list):
        classes.value = [merge(c, Node({k: v for k, v in patch.value.items()
                                        if k not in own.get(c.value["size"].value, ())},
                                       patch.file, patch.line))
                         for c in classes.value]
