"""MkDocs hook: the config reference, generated from the pydantic models of `distdqn.config` at
every build, so that it cannot drift from the code.

A page that holds the line `<!-- config-reference -->` gets, in its place, one table per section
of `Config` (field, type, default before presets, and the field's docstring, which pydantic keeps
as its description because the models set `use_attribute_docstrings`). Nested sections
(`placement.actor`, ...) get a table of their own. The line `<!-- presets -->` becomes the list of
packaged presets (`distdqn config presets`), each with its file.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- config-reference -->"
PRESETS_MARKER = "<!-- presets -->"
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _import_config() -> Any:
    """The checkout's own `distdqn`, whatever the venv's editable install points at."""
    sys.path.insert(0, str(ROOT / "src"))
    from distdqn.config import Config

    return Config


def presets() -> str:
    """A table of the packaged presets, then each preset file as it ships, folded."""
    _import_config()
    from distdqn.config.presets import packaged_presets

    found = packaged_presets()
    lines = ["| preset | env ids | what it is |", "|---|---|---|"]
    lines += [f"| `{p.name}` | `{p.env_ids}` | {_one_line(p.description)} |" for p in found]
    for preset in found:
        text = (ROOT / "src" / "distdqn" / "presets" / preset.name).read_text()
        lines += ["", f'??? note "{preset.name}"', "    ```toml"]
        lines += [f"    {line}".rstrip() for line in text.splitlines()]
        lines += ["    ```"]
    return "\n".join(lines)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(value) for value in args)
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        return " \\| ".join(_type_name(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if annotation is Any:
        return "Any"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _item_metadata(annotation: Any) -> list[Any]:
    """The constraints on the items of a `tuple[Annotated[int, Field(ge=1)], ...]`."""
    found = []
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            for extra in typing.get_args(arg)[1:]:
                found += getattr(extra, "metadata", [extra])
    return found


def _number(value: Any) -> str:
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for name, sign in _BOUNDS.items():
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{sign} {_number(value)}")
    return ", ".join(parts)


def _is_section(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _table(model: Any, prefix: str, default: Any | None) -> tuple[list[str], list[tuple[str, Any, Any, str]]]:
    """The rows of a section's leaf fields, and its nested sections (path, model, default, doc)."""
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        value = getattr(default, name) if default is not None else field.get_default(call_default_factory=True)
        if _is_section(field.annotation):
            nested.append((f"{prefix}{name}", field.annotation, value, _one_line(field.description)))
            continue
        kind = _type_name(field.annotation)
        bounds = _bounds(field.metadata)
        items = _bounds(_item_metadata(field.annotation))
        kind = f"`{kind}`" + (f", {bounds}" if bounds else "") + (f", items {items}" if items else "")
        rows.append(f"| `{prefix}{name}` | {kind} | `{value!r}` | {_one_line(field.description)} |")
    return rows, nested


def _section(path: str, model: Any, default: Any | None, doc: str, level: int) -> list[str]:
    lines = [f"{'#' * level} [{path}]", ""]
    if doc:
        lines += [doc, ""]
    rows, nested = _table(model, f"{path}.", default)
    lines += rows + [""]
    for child in nested:
        lines += _section(*child, level + 1)
    return lines


def reference() -> str:
    """The generated Markdown: top-level fields first, then a heading and table per section."""
    config = _import_config()
    rows, sections = _table(config, "", None)
    lines = ["## Top level", ""] + rows + [""]
    for path, model, default, doc in sections:
        lines += _section(path, model, default, doc, 2)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, reference())
    if PRESETS_MARKER in markdown:
        markdown = markdown.replace(PRESETS_MARKER, presets())
    return markdown
