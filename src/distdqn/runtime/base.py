"""The runtime interface the training loop is written against: spawn, call, wait, get.

A runtime decides where a role lives and what a future is. Inline futures are already resolved
values; a distributed runtime returns handles to results still being computed. Futures may be
passed as arguments to later calls: the runtime resolves them where the call runs, so data can go
actor -> shard -> learner without passing through the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

RoleT = TypeVar("RoleT")


class RoleFailed(Exception):
    """A role instance died while serving a call, or was not up to take it.

    `restarting` says the runtime is bringing it back: the same call may succeed later.
    """

    def __init__(self, role_name: str, reason: str, restarting: bool = False) -> None:
        super().__init__(f"{role_name} failed: {reason}")
        self.role_name = role_name
        self.reason = reason
        self.restarting = restarting


class Runtime(Protocol):
    def spawn(self, role: type[RoleT], *args: Any, name: str) -> Any:
        """Create a role instance wherever the placement puts `name` (e.g. `actor-0`); return a handle."""

    def call(self, handle: Any, method: str, *args: Any, num_returns: int = 1) -> Any:
        """Invoke a method of a spawned role; futures among `args` are resolved first.

        With `num_returns` > 1 the method returns a tuple and the call one future per element,
        so a small part can be read without fetching a large one."""

    def put(self, value: Any) -> Any:
        """A future already holding `value` (a restored result, such as a checkpoint's pending batch)."""

    def where(self, handle: Any) -> Any:
        """Where the role runs: {pid, node_id, node_ip, restarted}."""

    def wait(self, futures: Sequence[Any], num_returns: int = 1, timeout: float | None = None) -> list[Any]:
        """Block until `num_returns` of `futures` are done or `timeout` passes; return the done ones."""

    def get(self, future: Any) -> Any:
        """The value of a finished call; raises `RoleFailed` if its role died."""

    def shutdown(self) -> None:
        """Stop every role this runtime started (and a cluster, if it started one)."""
