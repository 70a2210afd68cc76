"""Outputs of the tools (GIFs, videos, exported folders) replaced whole: each is written under a
temporary name next to where it goes and renamed into place, so that a reader never sees half of
one and an interrupted write leaves what was there."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to `path`: `.NAME.<8 hex digits>.tmp`, on the same file system, so
    that the rename into place is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a temporary file next to `path`, then rename it over `path`."""
    temporary = temporary_sibling(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
