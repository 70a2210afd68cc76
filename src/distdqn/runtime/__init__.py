"""Runtimes carry out a placement. Only a distributed runtime module may import its engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from distdqn.config import PlacementConfig
from distdqn.errors import UserError
from distdqn.runtime.base import RoleFailed, Runtime
from distdqn.runtime.inline import InlineRuntime
from distdqn.runtime.threads import ThreadedRuntime

if TYPE_CHECKING:
    from gymnasium.envs.registration import EnvSpec


def make_runtime(placement: PlacementConfig, env_specs: Sequence[EnvSpec] = ()) -> Runtime:
    """The runtime `placement` names. `env_specs`: env objects registered in this process
    (distdqn.envs.custom) that roles in other processes must register too (Ray's)."""
    if placement.runtime == "inline":
        return InlineRuntime()
    if placement.runtime == "threads":
        return ThreadedRuntime()
    if placement.runtime == "ray":
        try:
            from distdqn.runtime.ray import RayRuntime
        except ImportError:
            raise UserError("placement.runtime = 'ray' needs Ray: pip install 'distdqn[ray]'") from None
        return RayRuntime(placement, env_specs)
    raise ValueError(f"unknown runtime {placement.runtime!r}")


__all__ = ["InlineRuntime", "RoleFailed", "Runtime", "ThreadedRuntime", "make_runtime"]
