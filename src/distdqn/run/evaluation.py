"""Evaluation: scoring the greedy policy, one evaluation in flight at a time, and `best`.

Episodes are seeded by the env-step count, so a resumed run evaluates as the uninterrupted one
would and any score can be reproduced; `best` holds exactly the weights that were scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distdqn.config import Config
from distdqn.run.counters import Counters
from distdqn.run.metrics import MetricsLog, Progress
from distdqn.run.supervisor import Supervisor
from distdqn.runtime import RoleFailed, Runtime
from distdqn.seeding import stream_seed
from distdqn.storage.checkpoint import save_checkpoint
from distdqn.storage.object_store import RemoteRun

Mark = tuple[int, int, float]
"""(env_steps, updates, wall_s) of a point of the run."""


class Evaluations:
    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        evaluator: Any,
        counters: Counters,
        supervisor: Supervisor,
        run_dir: Path,
        store: RemoteRun | None,
        diverged: Callable[[str], Exception],
    ) -> None:
        """`diverged(what)`: the error that stops a run whose evaluated weights are not finite."""
        self.config = config
        self.runtime = runtime
        self.evaluator = evaluator
        self.counters = counters
        self.supervisor = supervisor
        self.run_dir = run_dir
        self.store = store
        self.diverged = diverged
        self.future: Any | None = None  # the evaluation in flight
        self.evaluated: tuple[Any, int] | None = None  # (weights future, seed) of the evaluation in flight
        self.mark: Mark = (-1, 0, 0.0)  # of the last evaluation started

    @property
    def in_flight(self) -> bool:
        return self.future is not None

    def start(self, weights: Any, seed: int | None = None) -> None:
        """Score `weights` (a future) on episodes seeded by this env-step count (or `seed`)."""
        counters = self.counters
        if seed is None:
            seed = stream_seed(self.config.seed, "evaluator", 1, counters.env_steps)
        self.future = self.runtime.call(self.evaluator, "evaluate", weights, seed)
        self.evaluated = (weights, seed)
        self.mark = (counters.env_steps, counters.updates, counters.wall_s)

    def finish(self, metrics: MetricsLog, progress: Progress) -> bool:
        """Log the greedy policy's score and save `best` on a new high; True when the score
        reached `stop_return` for the first time (the run then stops)."""
        future, self.future = self.future, None
        assert self.evaluated is not None
        weights_future, seed = self.evaluated
        try:
            result = self.runtime.get(future)
        except RoleFailed:
            self.supervisor.reconcile()
            return False
        counters = self.counters
        env_steps, updates, wall_s = self.mark
        mean = float(result.returns.mean())
        counters.last_eval_return = mean
        metrics.write(
            {
                "env_steps": env_steps,
                "updates": updates,
                "wall_s": round(wall_s, 3),
                "eval_return_mean": mean,
                "eval_return_std": float(result.returns.std()),
                "eval_episodes": len(result.returns),
                "eval_length_mean": float(result.lengths.mean()),
            }
        )
        progress.show_eval(mean)
        if self.config.checkpoint.keep_best and (counters.best_eval_return is None or mean > counters.best_eval_return):
            counters.best_eval_return = mean
            self._save_best(
                weights_future,
                {
                    "eval_return_mean": mean,
                    "eval_seed": seed,
                    "eval_episodes": len(result.returns),
                    "env_steps": env_steps,
                },
            )
        stop = self.config.stop_return
        if stop is not None and mean >= stop and counters.solved_at_env_steps is None:
            counters.solved_at_env_steps = env_steps
            counters.solved_at_wall_s = wall_s
            return True
        return False

    def _save_best(self, weights_future: Any, evaluation: dict[str, Any]) -> None:
        """`best` holds exactly the weights the evaluator scored, not the learner's weights when
        the score arrived (on Ray the learner moved on meanwhile); its state names their version
        and the evaluation's seed, so `distdqn evaluate best --seed S --episodes N` gives the score."""
        try:
            weights = self.runtime.get(weights_future)
        except RoleFailed:
            self.supervisor.reconcile()
            return
        tensors = {f"online.{name}": torch.from_numpy(np.array(value)) for name, value in weights.tensors.items()}
        state = {
            "counters": dataclasses.asdict(self.counters),
            "evaluation": {**evaluation, "weights_version": weights.version},
        }
        try:
            save_checkpoint(self.run_dir / "checkpoints", "best", self.config, tensors, state)
        except ValueError as error:
            raise self.diverged(f"the evaluated {error}") from None
        if self.store is not None:
            self.store.upload_best()
