"""Runtimes carry out a placement. Only a distributed runtime module may import its engine."""

from __future__ import annotations

from distdqn.config import PlacementConfig
from distdqn.runtime.base import Future, Runtime
from distdqn.runtime.inline import InlineRuntime


def make_runtime(placement: PlacementConfig) -> Runtime:
    if placement.runtime == "inline":
        return InlineRuntime()
    raise ValueError(f"unknown runtime {placement.runtime!r}")


__all__ = ["Future", "InlineRuntime", "Runtime", "make_runtime"]
