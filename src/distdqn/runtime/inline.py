"""Every role in this process: a call runs at once and its future holds the result.

Deterministic for a given seed, so it is the reference other runtimes are checked against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from distdqn.runtime.base import RoleT


class InlineFuture:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _resolve(argument: Any) -> Any:
    return argument.value if isinstance(argument, InlineFuture) else argument


class InlineRuntime:
    def __init__(self) -> None:
        self._roles: list[Any] = []

    def spawn(self, role: type[RoleT], *args: Any, name: str) -> RoleT:
        instance = role(*(_resolve(a) for a in args))
        self._roles.append(instance)
        return instance

    def call(self, handle: Any, method: str, *args: Any, num_returns: int = 1) -> Any:
        result = getattr(handle, method)(*(_resolve(a) for a in args))
        if num_returns == 1:
            return InlineFuture(result)
        return tuple(InlineFuture(part) for part in result)

    def put(self, value: Any) -> InlineFuture:
        return InlineFuture(value)

    def where(self, handle: Any) -> InlineFuture:
        return InlineFuture(this_process("inline"))

    def wait(
        self, futures: Sequence[InlineFuture], num_returns: int = 1, timeout: float | None = None
    ) -> list[InlineFuture]:
        return list(futures)

    def get(self, future: InlineFuture) -> Any:
        return future.value

    def shutdown(self) -> None:
        close_roles(self._roles)


def this_process(runtime: str) -> dict[str, Any]:
    """`where` for a role that lives in this process."""
    return {"pid": os.getpid(), "node_id": runtime, "node_ip": "127.0.0.1", "restarted": False}


def close_roles(roles: list[Any]) -> None:
    """Close the environments of in-process roles and forget them."""
    for role in roles:
        env = getattr(role, "env", None)
        if env is not None:
            env.close()
    roles.clear()
