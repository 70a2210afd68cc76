"""MkDocs hook: the install page's table of extras names exactly the extras `pyproject.toml` has
(but the developers' `dev`, `docs` and `bench`), so that the page fails the build when an extra is
added, renamed or removed without it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PAGE = "getting-started/install.md"
NOT_LISTED = {"dev", "docs", "bench"}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    listed = set(re.findall(r"^\| `([\w-]+)` \|", markdown, re.M))
    if listed != extras - NOT_LISTED:
        raise PluginError(
            f"{PAGE}: the table of extras lists {sorted(listed)}, pyproject.toml has "
            f"{sorted(extras - NOT_LISTED)} (missing: {sorted(extras - NOT_LISTED - listed)}, "
            f"unknown: {sorted(listed - extras)})"
        )
    return markdown
