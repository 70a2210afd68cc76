"""Optional packages and the extras that bring them.

`pip install distdqn` holds what one process needs to train and act; every other package comes
with an extra of pyproject.toml. Whatever needs one says so in one line naming the extra, never
with an ImportError traceback: code that can tell before importing asks `installed` and raises
`missing_extra`; any other import of a module named here is turned into that line by the CLI
(`extra_line`). tests/test_packaging.py checks this table against pyproject.toml.
"""

from __future__ import annotations

import importlib.util

from distdqn.errors import MissingExtra

EXTRA_OF_MODULE = {
    "ale_py": "atari",
    "cv2": "atari",
    "ray": "ray",
    "GPy": "ray",
    "sklearn": "ray",
    "pygame": "render",
    "PIL": "render",
    "imageio_ffmpeg": "video",
    "minatar": "minatar",
    "Box2D": "box2d",
    "highway_env": "driving",
    "envpool": "envpool",
    "fsspec": "cloud",
    "s3fs": "cloud",
    "gcsfs": "cloud",
    "tensorboard": "tensorboard",
    "matplotlib": "plot",
    "wandb": "wandb",
    "huggingface_hub": "hub",
}
"""Top-level module -> the extra whose packages provide it."""


def install_command(extra: str) -> str:
    return f"pip install 'distdqn[{extra}]'"


def installed(module: str) -> bool:
    """Whether `module` (top-level) can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def missing_extra(module: str, needed_for: str) -> MissingExtra:
    """The one-line error for `needed_for` (a config setting, a command, a flag) that needs `module`."""
    extra = EXTRA_OF_MODULE[module]
    return MissingExtra(f"{needed_for} needs the {extra} extra: {install_command(extra)}")


def extra_line(error: ImportError) -> str | None:
    """The one-line message for an import of a module that an extra provides, or None for any
    other import error (a bug, or a broken install, which keeps its traceback)."""
    top = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top) if isinstance(error, ModuleNotFoundError) else None
    if extra is None:
        return None
    return f"{top} is not installed; it comes with the {extra} extra: {install_command(extra)}"


def dependency_line(error: Exception) -> str | None:
    """For Gymnasium's DependencyNotInstalled (its own install advice names gymnasium's extras):
    the extra of ours that brings the missing module, when its message names one."""
    message = str(error)
    extra = next((extra for module, extra in EXTRA_OF_MODULE.items() if module in message.split()), None)
    return None if extra is None else f"it comes with the {extra} extra: {install_command(extra)}"
