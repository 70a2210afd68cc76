"""Whose choice an env id's import is. An env id `module:Name` makes gymnasium import `module`
before it makes the env. Typed by the user (`--env`, `--set env.id=`, `DQN("module:Name")`) that
is their choice; read from a file (a shared config, a downloaded run, checkpoint or exported
model) it would let the file's author run code, so it needs the module named as allowed."""

from __future__ import annotations

import shlex
from collections.abc import Collection
from pathlib import Path

from distdqn.config.messages import short_repr
from distdqn.config.tree import Config
from distdqn.errors import UserError


def imported_module(env_id: str) -> str | None:
    """The module gymnasium would import to make `env_id`, if any."""
    module, sep, _ = env_id.rpartition(":")
    return module if sep else None


def refuse_unrequested_imports(
    config: Config, allowed: Collection[str], typed: Collection[object], origin: Path | str | None, flag: str
) -> None:
    """Refuse `config` when its env id imports a module that is neither in `allowed` nor typed
    by the user (its id in `typed`); `flag` is how the user allows one (`--allow-import`)."""
    module = imported_module(config.env.id)
    if module is None or module in allowed or config.env.id in typed:
        return
    named = shlex.quote(module) if module.isprintable() else short_repr(module)
    where = str(origin or "the config")
    where = where if where.isprintable() else short_repr(where)
    raise UserError(
        f"env.id {short_repr(config.env.id)} from {where} would import module {short_repr(module)}; "
        f"pass {flag} {named} if you trust it"
    )
