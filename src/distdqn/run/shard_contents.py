"""What the loop knows of the replay shards: each one's sampleable size and priority mass, which
the rate limiter waits on (learning_starts) and the sampling plan divides every batch by."""

from __future__ import annotations

from typing import Any

from distdqn.run.supervisor import Supervisor
from distdqn.runtime import RoleFailed, Runtime


class ShardContents:
    def __init__(self, runtime: Runtime, shards: list[Any], supervisor: Supervisor) -> None:
        self.runtime = runtime
        self.shards = shards
        self.supervisor = supervisor
        self.sizes = [0] * len(shards)  # latest known sampleable transitions per shard
        self.masses = [0.0] * len(shards)  # and their priority masses
        self._asked: list[Any] = []  # (size, mass) calls issued after the last group of updates

    def ask(self) -> None:
        """Ask every shard for its size and mass. Asked right after a group of updates is sent and
        read when the next one is planned, an answer is queued behind that group's samples only,
        so it is normally ready by then and the loop does not wait on a busy shard."""
        self._asked = [self.runtime.call(shard, "size_and_mass") for shard in self.shards]

    def read(self) -> None:
        """Take in the answers to the last ask, if not yet read."""
        asked, self._asked = self._asked, []
        for index, future in enumerate(asked):
            try:
                size, mass, pid = self.runtime.get(future)
            except RoleFailed:
                self.supervisor.reconcile()
                continue
            if pid != self.supervisor.pid(f"shard-{index}"):  # restarted since: count what the old one held
                self.supervisor.reconcile()
            self.sizes[index], self.masses[index] = size, mass

    def refresh(self) -> list[int]:
        """Every shard's sampleable size (and mass) now, waiting for the answers."""
        self.ask()
        self.read()
        return self.sizes

    def forget(self, index: int) -> int:
        """Shard `index` restarted empty: return what it held."""
        lost = self.sizes[index]
        self.sizes[index], self.masses[index] = 0, 0.0
        return lost
