"""The supervisor: where every role instance runs, and what a role's death means for the run.

A runtime restarts a dead role (Ray's max_restarts); the supervisor notices it by node and process id,
counts each death once however many calls it failed, keeps where roles run in
RUN_DIR/placement.json, and re-forms the learners' torch.distributed group after a learner died.

A role that cannot come back (the runtime says so, as Ray's does for a role pinned to a node that
is gone, or it stays down for RESTART_WAIT_S, with a warning every RESTART_WARN_S) is lost: the
run goes on without a lost actor while another is left, and stops for any other role.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distdqn.roles.learner_group import LearnerGroupBroken
from distdqn.run.counters import Counters
from distdqn.runtime import RoleFailed, Runtime
from distdqn.storage.run_files import replace_file

RESTART_WAIT_S = 300.0
"""How long a role may take to come back before it is lost (one whose node is gone is lost as
soon as the runtime knows: Ray marks a node dead after about 15 s of missed health checks)."""

RESTART_WARN_S = 30.0
"""How often a warning line says which role is still not back, and for how long."""


class Supervisor:
    def __init__(
        self,
        runtime: Runtime,
        run_dir: Path,
        handles: dict[str, Any],
        counters: Counters,
        on_restart: Callable[[str], None],
        on_lost: Callable[[str, str], Exception],
    ) -> None:
        """`handles`: every role instance by name (`actor-0`, `shard-1`, `learner-0`, `evaluator`).
        `on_restart(name)`: what the loop does when that role came back (a restarted shard is empty).
        `on_lost(name, reason)`: the error that stops the run when a role it needs is lost."""
        self.runtime = runtime
        self.run_dir = run_dir
        self.handles = handles
        self.counters = counters
        self.on_restart = on_restart
        self.on_lost = on_lost
        self.lost: set[str] = set()
        """Actors that cannot come back; the loop no longer calls them."""
        futures = {name: runtime.where(handle) for name, handle in handles.items()}
        self.where = {name: runtime.get(future) for name, future in futures.items()}

    def live(self, actors: list[Any]) -> list[Any]:
        """`actors` (by index) with None in place of a lost one."""
        return [None if f"actor-{i}" in self.lost else actor for i, actor in enumerate(actors)]

    def write_placement(self) -> None:
        """Where every role instance actually runs, to RUN_DIR/placement.json."""
        replace_file(self.run_dir / "placement.json", json.dumps(self.where, indent=1, sort_keys=True).encode())

    def pid(self, name: str) -> int:
        return int(self.where[name]["pid"])

    def reconcile(self) -> None:
        """A call failed because a role died. Count each death once, however many calls it
        failed: wait for the runtime to bring every role back and compare process ids (the failed
        call may name the role whose result it only consumed). A process is its node and its
        pid: a role restarted in a replacement container often gets the pid it had before."""
        for name in self.handles:
            where = None if name in self.lost else self._where_when_up(name)
            if where is None or (where["node_id"], where["pid"]) == (
                self.where[name]["node_id"],
                self.where[name]["pid"],
            ):
                continue
            self.where[name] = where
            kind = name.partition("-")[0]
            self.counters.restarts[kind] = self.counters.restarts.get(kind, 0) + 1
            self.on_restart(name)
        self.write_placement()

    def _where_when_up(self, name: str) -> dict[str, Any] | None:
        """Where a role runs, waiting while its runtime restarts it and saying so every
        RESTART_WARN_S; None once it is lost (see `_lose`)."""
        started = time.monotonic()
        warnings = 0
        while True:
            try:
                return self.runtime.get(self.runtime.where(self.handles[name]))
            except RoleFailed as failure:
                waited = time.monotonic() - started
                if not failure.restarting or waited > RESTART_WAIT_S:
                    self._lose(name, failure.reason if not failure.restarting else f"not back after {waited:.0f} s")
                    return None
                if waited >= (warnings + 1) * RESTART_WARN_S:
                    warnings += 1
                    print(
                        f"distdqn: warning: {name} is not back after {waited:.0f} s "
                        f"(restarting; lost after {RESTART_WAIT_S:g} s)",
                        file=sys.stderr,
                    )
                time.sleep(0.2)

    def _lose(self, name: str, reason: str) -> None:
        """Role `name` cannot come back: the run goes on without an actor while another is left;
        any other role stops it (`on_lost`)."""
        actors_left = [n for n in self.handles if n.startswith("actor-") and n != name and n not in self.lost]
        if not name.startswith("actor-") or not actors_left:
            raise self.on_lost(name, reason)
        self.lost.add(name)
        print(
            f"distdqn: warning: {name} is lost ({reason}); the run goes on with {len(actors_left)} "
            f"actor{'s' if len(actors_left) != 1 else ''}",
            file=sys.stderr,
        )

    def form_learner_group(self, learners: list[Any]) -> None:
        """The learners' torch.distributed group. Learners that all run on one node meet at a file
        there and talk over loopback, so nothing listens on the network; otherwise at a TCP store
        on learner 0, listening on its node's cluster address only (unauthenticated: see
        docs/reference/security.md)."""
        runtime = self.runtime
        places = [runtime.get(runtime.where(learner)) for learner in learners]
        if len({place["node_id"] for place in places}) == 1:
            meeting = "file://" + runtime.get(runtime.call(learners[0], "meeting_file"))
        else:
            address = places[0]["node_ip"]
            port = runtime.get(runtime.call(learners[0], "listen", address, len(learners)))
            meeting = f"tcp://{address}:{port}"
        joins = [
            runtime.call(learner, "join_group", meeting, rank, len(learners)) for rank, learner in enumerate(learners)
        ]
        for join in joins:
            runtime.get(join)

    def recover_learner_group(self, learners: list[Any], lost_updates: list[Any]) -> None:
        """After a learner died, every learner reloads `checkpoints/latest` (so that all are
        identical again) and the all-reduce group is formed anew. `lost_updates`, the updates
        that were in flight, are waited out and dropped."""
        for future in lost_updates:
            try:
                self.runtime.get(future)
            except (RoleFailed, LearnerGroupBroken):
                pass
        self.reconcile()
        for future in [self.runtime.call(learner, "reload") for learner in learners]:
            self.runtime.get(future)
        self.form_learner_group(learners)
