"""Every role in this process: a call runs at once and its future holds the result.

Deterministic for a given seed, so it is the reference other runtimes are checked against.
"""

from __future__ import annotations

from typing import Any, Sequence

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

    def call(self, handle: Any, method: str, *args: Any) -> InlineFuture:
        return InlineFuture(getattr(handle, method)(*(_resolve(a) for a in args)))

    def wait(self, futures: Sequence[InlineFuture], num_returns: int = 1) -> list[InlineFuture]:
        return list(futures)

    def get(self, future: InlineFuture) -> Any:
        return future.value

    def shutdown(self) -> None:
        for role in self._roles:
            env = getattr(role, "env", None)
            if env is not None:
                env.close()
        self._roles.clear()
