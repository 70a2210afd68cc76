"""Telemetry: the training lines of metrics.jsonl (rates since the last line, training episodes,
the learner's last metrics, restarts) and, on Ray, each role's own throughput and weight lag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from distdqn.config import Config
from distdqn.run.counters import Counters
from distdqn.run.metrics import MetricsLog
from distdqn.run.supervisor import Supervisor
from distdqn.runtime import RoleFailed, Runtime


class Telemetry:
    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        roles: tuple[list[Any], list[Any], list[Any]],
        counters: Counters,
        supervisor: Supervisor,
    ) -> None:
        """`roles`: the (actors, shards, learners) whose stats the lines report."""
        self.config = config
        self.runtime = runtime
        self.actors, self.shards, self.learners = roles
        self.counters = counters
        self.supervisor = supervisor
        self.log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self.role_marks: dict[str, float] = {}
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.last_metrics: dict[str, float] = {}  # the learner's, from its latest update

    def log_training(self, metrics: MetricsLog, replay_size: Callable[[], int]) -> None:
        """Write one training line: what happened since the last one."""
        counters = self.counters
        for actor in self.supervisor.live(self.actors):
            if actor is None:
                continue
            try:
                stats = self.runtime.get(self.runtime.call(actor, "episode_stats"))
            except RoleFailed:
                self.supervisor.reconcile()
                continue
            self.episode_returns += stats["returns"]
            self.episode_lengths += stats["lengths"]
        counters.episodes += len(self.episode_returns)
        steps0, updates0, wall0 = self.log_mark
        elapsed = max(counters.wall_s - wall0, 1e-9)
        record: dict[str, Any] = {
            "env_steps": counters.env_steps,
            "updates": counters.updates,
            "wall_s": round(counters.wall_s, 3),
            "env_steps_per_s": round((counters.env_steps - steps0) / elapsed, 1),
            "updates_per_s": round((counters.updates - updates0) / elapsed, 1),
            "episodes": counters.episodes,
            "replay_size": replay_size(),
        }
        if self.episode_returns:
            record["episode_return_mean"] = float(np.mean(self.episode_returns))
            record["episode_length_mean"] = float(np.mean(self.episode_lengths))
        record.update(self.last_metrics)
        record.update(self._role_metrics(elapsed))
        record.update({f"restarts_{kind}": count for kind, count in sorted(counters.restarts.items())})
        if counters.restarts:
            record["replay_lost"] = counters.replay_lost
        if self.supervisor.lost:
            record["actors_lost"] = len(self.supervisor.lost)
        metrics.write(record)
        self.log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self.episode_returns, self.episode_lengths = [], []

    def _role_metrics(self, elapsed: float) -> dict[str, float]:
        """Per-role throughput and weight lag; in one process only the epsilon is new (roles
        there move in lockstep)."""
        actor_stats = self._stats(self.supervisor.live(self.actors))
        record: dict[str, float] = {}
        if actor_stats[0] is not None:
            record["epsilon"] = round(actor_stats[0]["epsilon"], 5)
        if self.config.placement.runtime != "ray":
            return record
        learner_stats = self._stats(self.learners)
        for i, stats in enumerate(actor_stats):
            if stats is not None:
                record[f"actor_{i}_env_steps_per_s"] = self._rate(f"actor{i}", stats["env_steps"], elapsed)
        for j, stats in enumerate(self._stats(self.shards)):
            if stats is not None:
                record[f"shard_{j}_inserts_per_s"] = self._rate(f"shard{j}i", stats["inserted"], elapsed)
                record[f"shard_{j}_samples_per_s"] = self._rate(f"shard{j}s", stats["sampled"], elapsed)
        for k, stats in enumerate(learner_stats):
            if stats is not None:
                record[f"learner_{k}_updates_per_s"] = self._rate(f"learner{k}", stats["updates"], elapsed)
        versions = [s["weights_version"] for s in actor_stats if s is not None]
        if learner_stats[0] is not None and versions:
            record["weight_lag_max"] = learner_stats[0]["updates"] - min(versions)
        return record

    def _stats(self, handles: list[Any]) -> list[dict[str, float] | None]:
        """Each role's `stats`; None for a handle that is None or a role that failed."""
        futures = [None if handle is None else self.runtime.call(handle, "stats") for handle in handles]
        stats: list[dict[str, float] | None] = []
        for future in futures:
            if future is None:
                stats.append(None)
                continue
            try:
                stats.append(self.runtime.get(future))
            except RoleFailed:
                self.supervisor.reconcile()
                stats.append(None)
        return stats

    def _rate(self, key: str, value: float, elapsed: float) -> float:
        previous = self.role_marks.get(key, value)
        self.role_marks[key] = value
        return round(max(value - previous, 0) / elapsed, 1)
