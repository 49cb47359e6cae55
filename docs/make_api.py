"""Write the API reference, ``docs/api.md``, from the package's docstrings.

Usage::

    python docs/make_api.py [OUTPUT]      # OUTPUT defaults to docs/api.md

One section per module; for each public object its signature (``inspect.signature``) and
its numpydoc docstring rendered as Markdown. The output depends only on the source, so
``tests/test_docs.py`` can check that the committed ``docs/api.md`` is up to date.
Standard library and the package only.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

#: Modules documented, in this order; those marked optional are skipped when absent or
#: when they fail to import.
MODULES = [
    ("images", False),
    ("targets", False),
    ("datasets", False),
    ("backbones", False),
    ("cache", False),
    ("instrumentation", False),
    ("extraction", False),
    ("descriptors", False),
    ("vlad", False),
    ("preprocessing", False),
    ("augmentation", False),
    ("models", False),
    ("explain", False),
    ("report", False),
    ("cli", True),
]

#: numpydoc sections rendered as definition lists ("name : type" then an indented text).
DEFINITION_SECTIONS = {
    "Parameters",
    "Other Parameters",
    "Returns",
    "Yields",
    "Receives",
    "Raises",
    "Warns",
    "Attributes",
}

SECTION_NAMES = DEFINITION_SECTIONS | {
    "See Also",
    "Notes",
    "References",
    "Examples",
    "Warnings",
    "Methods",
}

SIGNATURE_WIDTH = 88


# --------------------------------------------------------------------------- text helpers


def rst_to_md(text: str) -> str:
    """Turn the reStructuredText inline markup of docstrings into Markdown."""
    # :role:`~a.b.C` -> `C`; :role:`a.b.C` -> `a.b.C`; :role:`title <target>` -> `title`
    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        if "<" in target and target.endswith(">"):
            target = target.split("<", 1)[0].strip()
        if target.startswith("~"):
            target = target[1:].rsplit(".", 1)[-1]
        return f"`{target}`"

    text = re.sub(r":[a-z]+(?::[a-z]+)?:`([^`]+)`", role, text)
    # `title <url>`_ -> [title](url)
    text = re.sub(r"`([^`<]+?)\s*<([^>]+)>`__?", r"[\1](\2)", text)
    # ``literal`` -> `literal`
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    # a trailing "::" introducing a literal block reads as ":"
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)
    return text


def get_doc(obj: object) -> str:
    """The object's own docstring, dedented (no docstring inherited from a base class)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    return inspect.cleandoc(doc)


def split_sections(doc: str) -> list[tuple[str, list[str]]]:
    """Split a numpydoc docstring into ``[(section name, lines)]``; the first is ``""``."""
    lines = doc.splitlines()
    sections: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if (
            line.strip() in SECTION_NAMES
            and underline
            and set(underline) == {"-"}
            and not line.startswith(" ")
        ):
            sections.append((line.strip(), []))
            i += 2
            continue
        sections[-1][1].append(line)
        i += 1
    return [(name, _strip_blank(body)) for name, body in sections]


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def paragraphs(lines: list[str]) -> list[str]:
    """Join lines into Markdown paragraphs, keeping indented blocks and list items as is."""
    text = textwrap.dedent("\n".join(lines)).strip("\n")
    if not text:
        return []
    return [rst_to_md(block.strip("\n")) for block in re.split(r"\n\s*\n", text)]


def render_definitions(lines: list[str]) -> list[str]:
    """``name : type`` headers with indented descriptions -> a Markdown bullet list."""
    out: list[str] = []
    items: list[tuple[str, list[str]]] = []
    for line in lines:
        if line and not line[0].isspace():
            items.append((line.strip(), []))
        elif items:
            items[-1][1].append(line)
        elif line.strip():  # text before the first item: keep it as a paragraph
            items.append(("", [line]))
    for header, body in items:
        if " : " in header:
            name, kind = header.split(" : ", 1)
            head = f"- `{name.strip()}` : {rst_to_md(kind.strip())}"
        elif header:
            head = f"- `{header}`" if re.fullmatch(r"[\w.,* ]+", header) else f"- {header}"
        else:
            head = "-"
        desc = paragraphs(body)
        if not desc:
            out.append(head)
            continue
        first = desc[0].replace("\n", "\n  ")
        out.append(f"{head}  \n  {first}" if head != "-" else f"- {first}")
        for para in desc[1:]:
            out.append("")
            out.append("  " + para.replace("\n", "\n  "))
    return out


def render_see_also(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        if line[0].isspace() and out:
            out[-1] += " " + rst_to_md(line.strip())
            continue
        name, _, desc = line.partition(" : ")
        for part in name.split(","):
            part = part.strip()
            if part:
                out.append(f"- `{part}`" + (f": {rst_to_md(desc.strip())}" if desc else ""))
    return out


def render_examples(lines: list[str]) -> list[str]:
    """Doctest runs become fenced python blocks; prose between them stays prose."""
    out: list[str] = []
    block: list[str] = []
    prose: list[str] = []

    def flush_prose() -> None:
        for para in paragraphs(prose):
            out.extend([para, ""])
        prose.clear()

    def flush_block() -> None:
        if block:
            out.extend(["```python", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""])
        block.clear()

    in_block = False
    for line in textwrap.dedent("\n".join(lines)).splitlines():
        if line.lstrip().startswith(">>>"):
            if not in_block:
                flush_prose()
                in_block = True
            block.append(line)
        elif in_block and line.strip():
            block.append(line)
        else:
            if in_block:
                flush_block()
                in_block = False
            prose.append(line)
    flush_block()
    flush_prose()
    return _strip_blank(out)


def render_docstring(doc: str) -> list[str]:
    out: list[str] = []
    for name, body in split_sections(doc):
        if not body:
            continue
        if name:
            out.extend([f"**{name}**", ""])
        if name in DEFINITION_SECTIONS:
            out.extend(render_definitions(body))
        elif name == "See Also":
            out.extend(render_see_also(body))
        elif name == "Examples":
            out.extend(render_examples(body))
        else:
            for para in paragraphs(body):
                out.extend([para, ""])
            out = _strip_blank(out)
        out.append("")
    return _strip_blank(out)


def summary_line(doc: str) -> str:
    first = split_sections(doc)[0][1]
    paras = paragraphs(first)
    return paras[0].replace("\n", " ") if paras else ""


# --------------------------------------------------------------------------- objects


class _Raw:
    """Prints as the given text (an annotation string, a clean default)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _clean(value: object, annotation: bool = False) -> object:
    if value is inspect.Parameter.empty:
        return value
    if annotation and isinstance(value, str):
        return _Raw(value)  # postponed annotations: show them unquoted
    text = repr(value)
    if " at 0x" not in text:
        return value
    # functions, classes and other objects whose repr holds a memory address
    qualname = getattr(value, "__qualname__", None)
    if qualname:
        return _Raw(qualname)
    return _Raw(f"<{type(value).__name__}>")


def clean_signature(sig: inspect.Signature) -> inspect.Signature:
    """The signature with deterministic reprs: no memory addresses, unquoted annotations."""
    params = [
        p.replace(default=_clean(p.default), annotation=_clean(p.annotation, True))
        for p in sig.parameters.values()
    ]
    return sig.replace(
        parameters=params, return_annotation=_clean(sig.return_annotation, True)
    )


def format_signature(name: str, obj: object) -> str | None:
    try:
        sig = clean_signature(inspect.signature(obj))
    except (TypeError, ValueError):
        return None
    if inspect.isclass(obj):  # a constructor returns the instance, not its annotation
        sig = sig.replace(return_annotation=inspect.Signature.empty)
    text = f"{name}{sig}"
    if len(text) <= SIGNATURE_WIDTH:
        return text
    # one parameter a line, with the "/" and "*" markers inspect puts between them
    positional_only, var_positional, keyword_only = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY,
    )
    rendered: list[str] = []
    previous = None
    for param in sig.parameters.values():
        if previous == positional_only and param.kind != positional_only:
            rendered.append("/")
        if param.kind == keyword_only and previous not in (keyword_only, var_positional):
            rendered.append("*")
        rendered.append(str(param))
        previous = param.kind
    if previous == positional_only:
        rendered.append("/")
    ret = ""
    if sig.return_annotation is not inspect.Signature.empty:
        ret = " -> " + inspect.formatannotation(sig.return_annotation)
    return f"{name}(\n" + "".join(f"    {p},\n" for p in rendered) + f"){ret}"


def describe_data(name: str, value: object) -> list[str]:
    """A module constant: its value when short and plain, else its type (and keys)."""
    plain = (str, int, float, bool, type(None))

    def is_plain(v: object) -> bool:
        if isinstance(v, plain):
            return True
        if isinstance(v, (tuple, list, frozenset)):
            return all(is_plain(x) for x in v)
        if isinstance(v, dict):
            return all(is_plain(k) and is_plain(x) for k, x in v.items())
        return False

    if is_plain(value) and not isinstance(value, (set, frozenset)):
        text = f"{name} = {value!r}"
        if len(text) > SIGNATURE_WIDTH and isinstance(value, dict):
            text = f"{name} = {{\n" + "".join(
                f"    {k!r}: {v!r},\n" for k, v in value.items()
            ) + "}"
        return ["```python", text, "```"]
    if isinstance(value, dict):
        keys = ", ".join(f"`{k}`" for k in value)
        return [f"A `dict` ({len(value)} entries at import time): {keys}."]
    origin = getattr(value, "__origin__", None)
    if origin is not None:  # a typing alias such as Union[...]
        text = re.sub(r"ForwardRef\('([^']+)'\)", r"\1", repr(value)).replace("typing.", "")
        return ["```python", f"{name} = {text}", "```"]
    return [f"An object of type `{type(value).__name__}`."]


def class_methods(cls: type) -> list[tuple[str, object]]:
    """Public methods defined by the class or its cnnfeatures bases, sorted by name."""
    found: dict[str, object] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("cnnfeatures"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in found:
                continue
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if inspect.isfunction(func) or isinstance(value, property):
                found[attr] = value
    return sorted(found.items())


def render_object(name: str, obj: object) -> list[str]:
    out = [f"### `{name}`", ""]
    is_alias = getattr(obj, "__origin__", None) is not None  # typing.Union[...] and such
    if not is_alias and (inspect.isclass(obj) or inspect.isroutine(obj)):
        sig = format_signature(name, obj)
        if inspect.isclass(obj):
            bases = [b.__name__ for b in obj.__bases__ if b is not object]
            kind = "exception" if issubclass(obj, BaseException) else "class"
            suffix = f" ({', '.join(f'`{b}`' for b in bases)})" if bases else ""
            out.extend([f"*{kind}*{suffix}", ""])
        if sig:
            out.extend(["```python", sig, "```", ""])
        out.extend(render_docstring(get_doc(obj)))
        out.append("")
        if inspect.isclass(obj):
            methods = []
            for attr, value in class_methods(obj):
                if isinstance(value, property):
                    text = f"- `{attr}` (property)"
                    doc = get_doc(value.fget)
                else:
                    func = value
                    if isinstance(value, (classmethod, staticmethod)):
                        func = value.__func__
                    try:
                        params = str(clean_signature(inspect.signature(func)))
                    except (TypeError, ValueError):
                        params = "(...)"
                    params = re.sub(r"^\(self,? ?", "(", params)
                    params = re.sub(r"^\(cls,? ?", "(", params)
                    params = re.sub(r" -> .*$", "", params)
                    text = f"- `{attr}{params}`"
                    doc = get_doc(func)
                summary = summary_line(doc)
                methods.append(text + (f": {summary}" if summary else ""))
            if methods:
                out.extend(["**Methods**", "", *methods, ""])
    else:
        out.extend(describe_data(name, obj))
        out.append("")
    return out


def public_names(module: object) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
    )


# --------------------------------------------------------------------------- the page


def render() -> str:
    package = importlib.import_module("cnnfeatures")
    modules = []
    for short, optional in MODULES:
        try:
            modules.append(importlib.import_module(f"cnnfeatures.{short}"))
        except Exception:
            if not optional:
                raise

    # Each object is documented once: under the listed module that defines it, else the
    # first listed module that exports it.
    home: dict[int, str] = {}
    listed = {m.__name__ for m in modules}
    for module in modules:
        for name in public_names(module):
            obj = getattr(module, name)
            defined_in = getattr(obj, "__module__", None)
            if defined_in in listed and defined_in != module.__name__:
                continue
            home.setdefault(id(obj), module.__name__)

    lines = [
        "# API reference",
        "",
        "<!-- Generated by docs/make_api.py from the docstrings; do not edit by hand. -->",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; "
        "`tests/test_docs.py` checks that it is up to date.",
        "",
        "## `cnnfeatures`",
        "",
    ]
    paras = paragraphs(get_doc(package).splitlines())
    if paras:
        lines.extend([paras[0], ""])
    lines.extend(["| name | documented in |", "|---|---|"])
    orphans = []
    for name in package.__all__:
        obj = getattr(package, name)
        where = home.get(id(obj))
        if where is None:
            orphans.append(name)
            lines.append(f"| `{name}` | below |")
        else:
            lines.append(f"| `{name}` | `{where}` |")
    lines.append("")
    for name in orphans:
        lines.extend(render_object(name, getattr(package, name)))

    for module in modules:
        names = [
            name
            for name in public_names(module)
            if home.get(id(getattr(module, name))) == module.__name__
        ]
        lines.extend([f"## `{module.__name__}`", ""])
        paras = paragraphs(get_doc(module).splitlines())
        if paras:
            lines.extend([paras[0], ""])
        for name in names:
            lines.extend(render_object(name, getattr(module, name)))

    text = "\n".join(line.rstrip() for line in lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    output = Path(argv[0]) if argv else Path(__file__).resolve().parent / "api.md"
    output.write_text(render(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
