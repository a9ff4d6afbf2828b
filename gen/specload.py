"""Load YAML keeping source positions, so every error can name FILE:LINE.

yaml.safe_load drops positions; yaml.compose keeps a mark on every node.  We
turn the node graph into `Node` values: mappings become dicts of Node, lists
become lists of Node, scalars become Python values, each with file and line.
"""
import bisect
import re

import yaml
from yaml.constructor import SafeConstructor


class SpecError(Exception):
    """A problem with a spec, reported as FILE:LINE: field: message."""

    def __init__(self, file, line, field, message):
        super().__init__(f"{file}:{line}: {field}: {message}")
        self.file, self.line, self.field, self.message = file, line, field, message


class Node:
    """A YAML value with where it came from (1-based line)."""
    __slots__ = ("value", "file", "line")

    def __init__(self, value, file, line):
        self.value, self.file, self.line = value, file, line

    def error(self, field, message):
        return SpecError(self.file, self.line, field, message)

    def plain(self):
        """The value without positions (recursively)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def __repr__(self):
        return f"Node({self.value!r} @{self.file}:{self.line})"


_scalars = SafeConstructor()


MAX_NODES = 100_000  # a spec is a few hundred; aliases of aliases can expand to billions


class _Lines:
    """Line numbers as an editor, `wc -l` and the compiler count them: after each "\n" only.
    PyYAML's marks also count U+0085, U+2028 and U+2029 (YAML 1.1 line breaks), which
    numbered every line after one of them past where it is."""

    def __init__(self, text):
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def of(self, mark):
        """The 1-based line of a mark."""
        return bisect.bisect_left(self.newlines, mark.index) + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes the line of every alias used as a list item or a mapping
    value: the composer hands out the anchor's own node for an alias, whose marks are the
    anchor's, and an error in the value should name where the alias is used.
    alias_lines: {(id(parent node), list index or id(key node)): line}."""

    def __init__(self, stream, lines):
        super().__init__(stream)
        self.alias_lines = {}
        self.lines = lines

    def compose_node(self, parent, index):
        if parent is not None and index is not None and self.check_event(yaml.AliasEvent):
            where = index if isinstance(index, int) else id(index)
            self.alias_lines[(id(parent), where)] = self.lines.of(self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _convert(node, file, lines, alias_lines, at=None, _open=frozenset(), _budget=None):
    """node as a Node tree.  at: the line of the alias that this node was reached through
    (the outermost one), if any: every line in it is that one, so that an error in a value
    names where the alias is used, not the anchor's text, which may be valid where it is."""
    line = at or lines.of(node.start_mark)
    if id(node) in _open:  # an alias inside its own anchor: `a: &x [*x]`
        raise SpecError(file, line, "(yaml)", "an alias refers to a node that contains it")
    budget = _budget if _budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(file, line, "(yaml)", f"more than {MAX_NODES} values once aliases are "
                        "expanded")
    inner = _open | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key_line = at or lines.of(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(file, key_line, "(key)", "mapping keys must be plain scalars")
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError(file, key_line, "<<", "YAML merge keys are not supported")
            if key_node.tag in (_TIMESTAMP, _BINARY):
                key = key_node.value  # its text, as for a value (below)
            else:
                key = _scalar(key_node, file, key_line)
            if isinstance(key, bool) or key is None:
                raise SpecError(file, key_line, str(key_node.value), "not a valid key")
            key = str(key) if not isinstance(key, int) else key
            if key in out:
                raise SpecError(file, key_line, str(key),
                                f"repeated key (first at line {out[key].line})")
            value = _convert(value_node, file, lines, alias_lines,
                             at or alias_lines.get((id(node), id(key_node))), inner, budget)
            if isinstance(value.value, (dict, list)):  # a block value below its key: the key's line
                value.line = min(value.line, key_line)
            out[key] = value
        return Node(out, file, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, file, lines, alias_lines,
                              at or alias_lines.get((id(node), i)), inner, budget)
                     for i, item in enumerate(node.value)], file, line)
    if node.tag in (_TIMESTAMP, _BINARY):
        return Node(node.value, file, line)  # keep as text; the schema rejects it
    return Node(_scalar(node, file, line), file, line)


_TIMESTAMP, _BINARY = "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"


_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")


def _scalar(node, file, line):
    """A scalar's Python value; a value its explicit tag cannot read (`!!int x`) is an error,
    and so is an integer not written in plain decimal: YAML 1.1 reads 010 as 8 and 1:00 as
    60, which no one writing a spec means."""
    text = _short(node.value)
    try:
        value = _scalars.construct_object(node)
    except (ValueError, KeyError, IndexError, OverflowError, AttributeError, TypeError) as e:
        raise SpecError(file, line, "(yaml)",
                        f"{text} is not a valid {node.tag.rsplit(':', 1)[-1]}") from e
    if node.tag == "tag:yaml.org,2002:int" and not _DECIMAL.fullmatch(node.value):
        raise SpecError(file, line, "(yaml)", f"{text} is not a decimal integer (YAML 1.1 "
                        f"reads it as {_short(str(value))})")
    return value


def _short(text):
    """repr of a scalar's text for a message, at most about 40 characters."""
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def load(path, display=None):
    """Parse one YAML file into a Node tree. `display` is the name errors use."""
    name = display or path
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError(name, 0, "(file)", "no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(name, 0, "(file)", f"cannot read: {e}")
    last_line = text.rstrip().count("\n") + 1
    try:
        lines = _Lines(text)
        loader = _Loader(text, lines)  # what yaml.compose does, keeping the loader's alias lines
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except RecursionError:
        raise SpecError(name, 0, "(yaml)", "malformed YAML: nested too deeply")
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context_mark and mark.index >= len(text):  # ran off the end: where the open `[` began
            mark = e.context_mark
        line = min(lines.of(mark), last_line) if mark else 0
        what = e.problem or e.context
        if e.problem and e.context:
            begun = min(lines.of(e.context_mark), last_line) if e.context_mark else line
            what += f" ({e.context})" if begun == line else f" ({e.context} at line {begun})"
        raise SpecError(name, line, "(yaml)", f"malformed YAML: {what}")
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise SpecError(name, line, "(yaml)", f"malformed YAML: character #x{e.character:04x}: "
                        f"{e.reason}")
    except yaml.YAMLError as e:
        raise SpecError(name, 0, "(yaml)", f"malformed YAML: {str(e).splitlines()[0]}")
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        raise SpecError(name, 1, "(file)", "empty spec")
    try:
        return _convert(root, name, lines, loader.alias_lines)
    except RecursionError:
        raise SpecError(name, 0, "(yaml)", "nested too deeply")
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise SpecError(name, lines.of(mark) if mark else 0, "(yaml)", str(e.problem))
