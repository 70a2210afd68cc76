"""The packaged presets (src/distdqn/presets/*.toml): which one an env id starts from, and what each
says of itself in the comment at its top (`distdqn config presets` lists them)."""

from __future__ import annotations

import functools
import importlib.resources
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def is_atari_id(env_id: str) -> bool:
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


FAMILIES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "atari.toml": ("ALE/<Game>-v5, <Game>NoFrameskip-v4", is_atari_id),
    "minatar.toml": ("MinAtar/<Game>-v1", lambda env_id: env_id.startswith("MinAtar/")),
}
"""Presets shared by a family of ids: file -> (the ids, as shown to the user; whether an id is one)."""


class Preset(NamedTuple):
    name: str
    """The file's name, such as `CartPole-v1.toml`."""
    env_ids: str
    """The ids that start from it: one id, or a family's pattern."""
    description: str
    """The first sentence of the comment at the file's top."""


def preset_for(env_id: str) -> dict[str, Any]:
    """The packaged preset for an env id (all Atari games share one, as do MinAtar's), or {}."""
    name = next((name for name, (_, member) in FAMILIES.items() if member(env_id)), None)
    name = name or env_id.replace("/", "_") + ".toml"
    if name not in _preset_names():  # looked up, not opened: an id of 5,000 characters is no file name
        return {}
    return tomllib.loads(_read(name))


def packaged_presets() -> list[Preset]:
    """Every packaged preset, by name."""
    return [_preset(name) for name in sorted(_preset_names(), key=str.lower)]


def _preset(name: str) -> Preset:
    text = _read(name)
    family = FAMILIES.get(name)
    env_ids = family[0] if family else tomllib.loads(text).get("env", {}).get("id", name.removesuffix(".toml"))
    return Preset(name, env_ids, _first_sentence(text))


def _first_sentence(text: str) -> str:
    """The first sentence of the comment lines a file opens with ('' without one)."""
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    return re.split(r"(?<=\.)\s", " ".join(comment).strip(), maxsplit=1)[0]


def _read(name: str) -> str:
    return importlib.resources.files("distdqn.presets").joinpath(name).read_text()


@functools.cache
def _preset_names() -> frozenset[str]:
    return frozenset(
        item.name for item in importlib.resources.files("distdqn.presets").iterdir() if item.name.endswith(".toml")
    )
