"""Where a run lives: a local path or a URI. Kept apart from `distdqn.storage.object_store`, which
reads and writes stores, so that the command line parses a location without importing torch."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def is_remote(location: str | Path) -> bool:
    """Whether a run location is a URI (`s3://bucket/run`, `gs://...`, `file:///...`) rather
    than a local path. A `Path` never is: `Path("s3://b")` has already lost a slash."""
    return isinstance(location, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def location(text: str) -> Path | str:
    """argparse type for a run directory or checkpoint: a URI stays a string, a path a `Path`
    (an empty one is refused: `Path("")` would be the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no run directory")
    return text if is_remote(text) else Path(text)
