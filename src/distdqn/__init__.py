"""distdqn: Deep Q-Networks from one process to a Ray cluster, with the same config.

`from distdqn import DQN` is the Python API (see distdqn.api); importing the package registers
distdqn's Gymnasium envs (`distdqn/Maze-v0`, `distdqn/Recommend-v0`) and nothing heavier, so that
`import distdqn` and the command line's help stay fast: torch is imported with the API's objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distdqn.env_ids import register_builtin_envs

__version__ = "0.1.0"

if TYPE_CHECKING:
    from distdqn.api import DQN
    from distdqn.run.callbacks import Callback, CallbackList

__all__ = ["DQN", "Callback", "CallbackList", "__version__"]

_LAZY = {"DQN": "distdqn.api", "Callback": "distdqn.run.callbacks", "CallbackList": "distdqn.run.callbacks"}

register_builtin_envs()


def __getattr__(name: str) -> Any:
    """The API's objects, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'distdqn' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
