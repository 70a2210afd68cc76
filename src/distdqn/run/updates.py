"""The learning half of the loop: sample -> update -> priorities back -> publish weights.

`TrainingRun` decides when things happen; this owns the updates in flight on the learners: how
many are owed (the rate limiter), which shard each batch's rows come from, the priority writes,
the updates' metrics, a learner group's recovery, and the weights last published.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from distdqn.config import Config
from distdqn.config_changes import beta_schedule
from distdqn.roles.learner_group import LearnerGroupBroken
from distdqn.run.counters import Counters
from distdqn.run.rate_limiter import RateLimiter
from distdqn.run.roles import RunRoles
from distdqn.run.shard_contents import ShardContents
from distdqn.run.supervisor import Supervisor
from distdqn.run.telemetry import Telemetry
from distdqn.runtime import RoleFailed, Runtime
from distdqn.seeding import role_rng

UPDATE_CHUNK = 8
"""Batches per sample -> update call: small enough that a learner starts while the shard samples
the next chunk, large enough that messages stay few."""


def plan_rows(rng: np.random.Generator, masses: list[float], batch_size: int, num_batches: int) -> np.ndarray:
    """[num_batches, num_shards] rows each batch draws from each shard: a multinomial over the
    shards' priority masses (their sizes under uniform replay), so that a row comes from a shard
    with the probability one buffer holding all of them would give."""
    shares = np.asarray(masses, np.float64)
    return rng.multinomial(batch_size, shares / shares.sum(), size=num_batches)


class UpdatePipeline:
    def __init__(
        self,
        config: Config,
        previous: Config,
        runtime: Runtime,
        roles: RunRoles,
        counters: Counters,
        contents: ShardContents,
        supervisor: Supervisor,
        telemetry: Telemetry,
        resumed_at: int | None,
        watch: Callable[[Any], None],
        diverged: Callable[[str], Exception],
    ) -> None:
        """`previous`: the config of the checkpoint the run continues (else `config`), whose
        importance-sampling exponent schedule is rebased from here. `resumed_at`: the env step
        where the sampling plans' random stream branches off (see `TrainingRun`). `watch(future)`
        hands the loop a call whose result is only checked for a dead role; `diverged(what)` is
        the error that ends a run whose loss is not finite."""
        self.config, self.runtime, self.counters = config, runtime, counters
        self.learners, self.replicas, self.shards = roles.learners, roles.replicas, roles.shards
        self.contents, self.supervisor, self.telemetry = contents, supervisor, telemetry
        self.plan_rng = role_rng(config.seed, "loop", 0, *(() if resumed_at is None else (resumed_at,)))
        self.beta = beta_schedule(previous, counters.beta).rebased(
            counters.env_steps, config.replay.beta_end, config.total_steps
        )
        counters.beta = [self.beta.origin, self.beta.value, self.beta.end, self.beta.horizon]
        self._watch, self._diverged = watch, diverged
        self.rate_limiter = RateLimiter(config)
        self.in_flight: dict[Any, int] = {}  # every learner's update futures, oldest first -> update count
        self.weights: Any = None  # the future of the weights last published

    def issue(self) -> None:
        """Send the owed updates to each learner in chunks. Every batch draws its rows from all
        shards, as many from each as a multinomial over their priority masses gives, so that replay
        is sampled as one buffer however the shards differ in size; masses are those the shards
        reported after the previous group (one group stale where shards run apart). Once every
        learner's chunks are sent the priorities are written back, so a shard sees all of a
        group's samples before any priority write, exactly as if the group were one call, while a
        learner can start on its first chunk as the next is sampled. All calls are chained futures."""
        owed = self.rate_limiter.owed(self.counters, self.steps_in_flight(), lambda: sum(self.contents.refresh()))
        if owed <= 0:
            return
        self.contents.read()
        if sum(self.contents.masses) <= 0:  # nothing to draw from (shards restarted empty): ask again
            self.contents.ask()
            return
        beta = self.beta.at(self.counters.env_steps)
        writes = []
        for replica in self.replicas:
            rows = plan_rows(self.plan_rng, self.contents.masses, self.config.algorithm.batch_size, owed)
            for start in range(0, owed, UPDATE_CHUNK):
                writes += self._send_chunk(replica, rows[start : start + UPDATE_CHUNK], beta)
        for shard, result in writes:
            self._watch(self.runtime.call(shard, "update_priorities", result))
        self.counters.updates += owed
        self.publish_weights()
        self.contents.ask()

    def _send_chunk(self, replica: list[Any], rows: np.ndarray, beta: float) -> list[tuple[Any, Any]]:
        """One update call on each learner of `replica` on the batches whose rows per shard are
        `rows` ([batches, shards]): one sample call per shard that gives rows, shared by the
        replica's head shards. Returns (shard, update future) for priority writes: the first head
        shard's (every shard of a replica computes the same |TD errors|)."""
        sizes, masses = self.contents.sizes, self.contents.masses
        total_size, total_mass = sum(sizes), sum(masses)
        used = [j for j in range(len(self.shards)) if rows[:, j].any()]
        samples = [
            self.runtime.call(self.shards[j], "sample", rows[:, j].tolist(), beta, total_size, masses[j] / total_mass)
            for j in used
        ]
        results = [self.runtime.call(learner, "update", self.counters.env_steps, *samples) for learner in replica]
        for result in results:
            self.in_flight[result] = len(rows)
        return [(self.shards[j], results[0]) for j in used]

    def finish(self, future: Any) -> None:
        """Take a finished update's metrics. One already taken (the rate limiter waits for the
        oldest while the loop holds a list of finished ones), or dropped by a learner-group
        recovery, has nothing left to take."""
        if self.in_flight.pop(future, None) is None:
            return
        try:
            metrics = self.runtime.get(future).metrics
            if metrics:
                self.telemetry.last_metrics = metrics
                if not math.isfinite(metrics["loss"]):
                    raise self._diverged(f"the loss is {metrics['loss']}")
        except (RoleFailed, LearnerGroupBroken) as failure:
            if isinstance(failure, RoleFailed):
                self.supervisor.reconcile()
            if len(self.learners) > 1:
                lost, self.in_flight = list(self.in_flight), {}
                self.supervisor.recover_learner_group(self.learners, lost)
            self.publish_weights()

    def finish_all(self) -> None:
        """Wait for every update in flight."""
        while self.in_flight:
            for future in self.runtime.wait(list(self.in_flight), num_returns=len(self.in_flight)):
                self.finish(future)

    def wait_for_room(self) -> None:
        """Finish the oldest updates until the rate limiter lets the actors collect again."""
        while self.rate_limiter.must_wait(self.steps_in_flight()):
            for future in self.runtime.wait([next(iter(self.in_flight))]):
                self.finish(future)

    def steps_in_flight(self) -> int:
        """Update steps sent but not finished (each learner runs every step)."""
        return sum(self.in_flight.values()) // len(self.learners)

    def publish_weights(self) -> None:
        """The first learner's weights; with a split head, its replica's shards gather them there."""
        self.weights, *gathering = self.call_replica("weights")
        for future in gathering:
            self._watch(future)

    def call_replica(self, method: str) -> list[Any]:
        """Call `method` on every learner of the first replica (its head shards)."""
        return [self.runtime.call(learner, method) for learner in self.replicas[0]]
