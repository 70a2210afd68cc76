"""Regenerate the README's config reference from the field docstrings in `distdqn.config`.

Run `python scripts/config_reference.py` after changing a field; `tests/test_config.py` fails
while the README lacks a field or carries an outdated docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from distdqn.config import Config

README = Path(__file__).parents[1] / "README.md"
INTRO = """## Config reference

Every field, its default (before presets) and its meaning. The source of truth is
`src/distdqn/config/` (the sections in `sections.py`, `Config` in `tree.py`), where each field
has its docstring.
"""


def _describe(field: FieldInfo) -> str:
    return " ".join((field.description or "").split()).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str, default: BaseModel | None = None, note: str = "") -> list[str]:
    """One row per leaf field; a nested section's fields get its default instance's values."""
    rows = []
    for name, field in model.model_fields.items():
        value = getattr(default, name) if default is not None else field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            rows += _rows(type(value), f"{prefix}{name}.", value, f" ({_describe(field).rstrip('.')})")
            continue
        rows.append(f"| `{prefix}{name}` | `{value!r}` | {_describe(field)}{note} |")
    return rows


def reference() -> str:
    header = "| field | default | meaning |\n|---|---|---|\n"
    top = [name for name, field in Config.model_fields.items() if not _is_section(field)]
    parts = [INTRO, header + "\n".join(row for row in _rows(Config, "") if row.split("`")[1] in top) + "\n"]
    for name, field in Config.model_fields.items():
        if _is_section(field):
            assert field.annotation is not None
            parts.append(f"**[{name}]**\n\n" + header + "\n".join(_rows(field.annotation, f"{name}.")) + "\n")
    return "\n".join(parts)


def _is_section(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def main() -> None:
    text = README.read_text()
    start = text.index("## Config reference")
    end = re.compile(r"^## ", re.M).search(text, start + 1)
    stop = end.start() if end else len(text)
    README.write_text(text[:start] + reference() + "\n" + text[stop:])


if __name__ == "__main__":
    main()
