"""Render the templates for one resolved spec; write only files whose bytes change."""
import json
import os
import re

import jinja2

import resolve
from specload import SpecError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "templates")
OUTPUTS = ("hak_spec.h", "hak_front.h", "hak_tables.c")
GENERATOR_VERSION = 10  # bump with the runtime's HAK_RUNTIME_VERSION (include/hak_abi.h)


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v)


def c_comment(text):
    """text for a line of a /* */ comment, whatever it is (a path): a backslash between
    `*` and `/` so that no `*/` ends the comment early (a spec under `try*/`) and no `/*`
    draws a warning; control characters, and bytes a file name had that are not UTF-8,
    as escapes (one line, and a file that can be written as UTF-8)."""
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
    return re.sub(r"(?<=\*)(?=/)|(?<=/)(?=\*)", lambda _: "\\", text)


def _env():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False)
    env.filters["cstr"] = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') \
        .replace("\n", "\\n") + '"'
    env.filters["c_comment"] = c_comment
    return env


def _rel(path):
    """A repo-relative path for banners (no absolute paths: output must not depend on
    where the checkout lives)."""
    full = os.path.abspath(path)
    return os.path.relpath(full, ROOT) if full.startswith(ROOT + os.sep) else os.path.basename(path)


def render_all(resolved, spec_path):
    m = resolve.model(resolved, _rel(spec_path))
    variant = os.path.splitext(os.path.basename(spec_path))[0]
    m["make_cmd"] = "make" if _rel(spec_path) == "spec/classes.yaml" else f"make VARIANT={variant}"
    m["generator_version"] = GENERATOR_VERSION
    m["spec_json"] = resolve.canonical_json(resolved)
    env = _env()
    out = {name: env.get_template(name + ".j2").render(**m) for name in OUTPUTS}
    out["spec.json"] = m["spec_json"]
    return out


class OutputError(SpecError):
    """A generated file that cannot be written: PATH: cannot write: reason (exit 2)."""

    def __init__(self, path, e):
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
        Exception.__init__(self, f"{path}: cannot write: {reason}")
        self.file, self.line, self.field, self.message = path, 0, "", reason


def _unchanged(path, text):
    """Whether path already holds exactly text (missing or unreadable: no)."""
    if os.path.isdir(path):
        raise OutputError(path, "it is a directory")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read() == text
    except (OSError, UnicodeDecodeError):
        return False


def generate(resolved, spec_path, outdir):
    """Write the generated files into outdir, all of them or none: every changed one
    goes to NAME.tmp first, and only once all are written are they renamed over
    their targets; on a failure the .tmp files are removed and outdir is as it was.
    An unchanged file is not rewritten (make rebuilds nothing).  Returns the paths
    written."""
    files = render_all(resolved, spec_path)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(outdir, "it is not a directory")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise OutputError(outdir, e)
    pending = [os.path.join(outdir, name) for name, text in sorted(files.items())
               if not _unchanged(os.path.join(outdir, name), text)]
    written = []
    try:
        for path in pending:
            written.append(path + ".tmp")
            with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
                f.write(files[os.path.basename(path)])
    except OSError as e:
        for tmp in written:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise OutputError(written[-1][:-len(".tmp")], e)
    for path in pending:  # renames within one directory: nothing left to fail but the OS
        try:
            os.replace(path + ".tmp", path)
        except OSError as e:
            raise OutputError(path, e)
    return pending
