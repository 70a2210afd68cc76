"""The runtime interface the training loop is written against: spawn, call, wait, get.

A runtime decides where a role lives and what a future is. Inline futures are already resolved
values; a distributed runtime returns handles to results still being computed. Futures may be
passed as arguments to later calls: the runtime resolves them where the call runs, so data can go
actor -> shard -> learner without passing through the loop.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, TypeVar

RoleT = TypeVar("RoleT")


class Future(Protocol):
    """An opaque handle to the result of a call."""


class Runtime(Protocol):
    def spawn(self, role: type[RoleT], *args: Any, name: str) -> Any:
        """Create a role instance wherever the placement puts `name`; return a handle to it."""

    def call(self, handle: Any, method: str, *args: Any) -> Future:
        """Invoke a method of a spawned role; futures among `args` are resolved first."""

    def wait(self, futures: Sequence[Future], num_returns: int = 1) -> list[Future]:
        """Block until at least `num_returns` of `futures` are done; return the done ones, in order."""

    def get(self, future: Future) -> Any:
        """The value of a finished call (raising its exception, if it raised)."""

    def shutdown(self) -> None:
        """Stop every role this runtime started."""
