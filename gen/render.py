"""Render the templates for one resolved spec; write only files whose bytes change."""
import os

import jinja2

import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "templates")
OUTPUTS = ("hak_spec.h", "hak_front.h", "hak_tables.c")
GENERATOR_VERSION = 1  # bump with the runtime's HAK_RUNTIME_VERSION (runtime/hak_abi.h)


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v)


def _env():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False)
    env.filters["cstr"] = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') \
        .replace("\n", "\\n") + '"'
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


def generate(resolved, spec_path, outdir):
    os.makedirs(outdir, exist_ok=True)
    changed = []
    for name, text in sorted(render_all(resolved, spec_path).items()):
        path = os.path.join(outdir, name)
        try:
            with open(path, encoding="utf-8", newline="") as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
        changed.append(path)
    return changed
