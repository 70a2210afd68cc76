"""The supervisor: where every role instance runs, and what a role's death means for the run.

A runtime restarts a dead role (Ray's max_restarts); the supervisor notices it by node and process id,
counts each death once however many calls it failed, keeps where roles run in
RUN_DIR/placement.json, and re-forms the learners' torch.distributed group after a learner died.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distdqn.roles.learner import LearnerGroupBroken
from distdqn.run.counters import Counters
from distdqn.runtime import RoleFailed, Runtime
from distdqn.storage.run_files import replace_file

RESTART_WAIT_S = 300.0
"""How long a role may take to come back before its death is final."""


class Supervisor:
    def __init__(
        self,
        runtime: Runtime,
        run_dir: Path,
        handles: dict[str, Any],
        counters: Counters,
        on_restart: Callable[[str], None],
    ) -> None:
        """`handles`: every role instance by name (`actor-0`, `shard-1`, `learner-0`, `evaluator`).
        `on_restart(name)`: what the loop does when that role came back (a restarted shard is empty)."""
        self.runtime = runtime
        self.run_dir = run_dir
        self.handles = handles
        self.counters = counters
        self.on_restart = on_restart
        futures = {name: runtime.where(handle) for name, handle in handles.items()}
        self.where = {name: runtime.get(future) for name, future in futures.items()}

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
            where = self._where_when_up(name)
            if (where["node_id"], where["pid"]) == (self.where[name]["node_id"], self.where[name]["pid"]):
                continue
            self.where[name] = where
            kind = name.partition("-")[0]
            self.counters.restarts[kind] = self.counters.restarts.get(kind, 0) + 1
            self.on_restart(name)
        self.write_placement()

    def _where_when_up(self, name: str) -> dict[str, Any]:
        """Where a role runs, waiting while its runtime restarts it; RoleFailed if it is gone for good."""
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            try:
                return self.runtime.get(self.runtime.where(self.handles[name]))
            except RoleFailed as failure:
                if not failure.restarting or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def form_learner_group(self, learners: list[Any]) -> None:
        """The learners' torch.distributed group. Learners that all run on one node meet at a file
        there and talk over loopback, so nothing listens on the network; otherwise learner 0's
        host is the meeting point (an unauthenticated TCP store: see README, Security)."""
        runtime = self.runtime
        places = [runtime.get(runtime.where(learner)) for learner in learners]
        if len({place["node_id"] for place in places}) == 1:
            init_method = "file://" + runtime.get(runtime.call(learners[0], "meeting_file"))
        else:
            port = runtime.get(runtime.call(learners[0], "free_port"))
            init_method = f"tcp://{places[0]['node_ip']}:{port}"
        joins = [
            runtime.call(learner, "join_group", init_method, rank, len(learners))
            for rank, learner in enumerate(learners)
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
