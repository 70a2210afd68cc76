"""This machine's memory, the one measure every "does it fit" check compares with.

A size too large for the machine (a replay, a Q-network's weights, an env's catalog, an array a
file declares) is refused in one line before anything is allocated, instead of ending in NumPy's
or torch's allocation traceback, or in the kernel's out-of-memory killer. Standard library only,
so that envs and storage can ask without importing torch.
"""

from __future__ import annotations

import os

GiB = 1 << 30


def machine_memory() -> int:
    """Bytes of physical memory of this machine: all of it, not what is free now, so a check
    refuses only what could never fit."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(size: int) -> str:
    """`size` bytes as every memory message writes them: `3,725.3 GiB`."""
    return f"{size / GiB:,.1f} GiB"


def require_memory(needed: int, message: str, error: type[Exception]) -> None:
    """Raise `error` with `message` (what needs `needed` bytes, and why) and what this machine has,
    when `needed` bytes exceed this machine's memory; each caller keeps the error type its
    callers catch."""
    available = machine_memory()
    if needed > available:
        raise error(f"{message}; this machine has {gib(available)}")
