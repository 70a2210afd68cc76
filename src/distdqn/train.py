"""The one training loop: collect -> insert -> sample -> update -> priorities back -> publish
weights -> evaluate -> checkpoint, written once against the runtime interface.

The loop keeps one collect call in flight per actor and hands each finished batch to the shards
as a future, so on a distributed runtime transitions never pass through the driver. Updates are
owed by the replay ratio: after learning starts, the learner has made exactly
`replay_ratio * (env steps since the start)` updates whenever the loop looks.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distdqn.checkpoint import load_checkpoint, save_checkpoint
from distdqn.config import Config, config_to_toml
from distdqn.envs import env_spaces
from distdqn.errors import UserError
from distdqn.metrics import MetricsLog, Progress
from distdqn.roles import Actor, Evaluator, Learner, ReplayShard
from distdqn.runtime import Future, Runtime, make_runtime
from distdqn.schedules import linear_schedule


@dataclass
class Counters:
    """Progress a checkpoint carries so that `--resume` continues where the run stopped."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    wall_s: float = 0.0
    best_eval_return: float | None = None
    last_eval_return: float | None = None
    solved_at_env_steps: int | None = None
    solved_at_wall_s: float | None = None


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    counters: Counters


def prepare_run_dir(run_dir: Path, config: Config) -> None:
    """Create a fresh run directory; refuse one that already holds a run."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} is not empty; use --resume {run_dir} or another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(config_to_toml(config))


class TrainingRun:
    """One run's roles, counters and outputs. `run()` is the loop."""

    def __init__(self, config: Config, run_dir: Path, runtime: Runtime, counters: Counters) -> None:
        self.config = config
        self.run_dir = run_dir
        self.runtime = runtime
        self.counters = counters
        placement = config.placement
        observation_space, action_space = env_spaces(config.env)
        self.learner = runtime.spawn(Learner, config, observation_space, action_space, name="learner")
        self.shards = [runtime.spawn(ReplayShard, config, j, observation_space, name=f"shard-{j}")
                       for j in range(placement.num_shards)]
        start_steps = counters.env_steps // placement.num_actors
        self.actors = [runtime.spawn(Actor, config, i, start_steps, name=f"actor-{i}")
                       for i in range(placement.num_actors)]
        self.evaluator = runtime.spawn(Evaluator, config.env, config.network, config.evaluation.episodes,
                                       config.seed * 10_000 + 9_000, config.evaluation.epsilon, name="evaluator")
        self.metrics = MetricsLog(run_dir, config.logging.tensorboard)
        self.progress = Progress(config.total_steps, counters.env_steps, config.logging.progress)
        self._last_update: Future | None = None
        self._log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self._episode_returns: list[float] = []
        self._episode_lengths: list[int] = []

    def restore(self, tensors: dict[str, torch.Tensor], learner_state: dict[str, Any]) -> None:
        self.runtime.get(self.runtime.call(self.learner, "load_state_dict", tensors, learner_state))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Counters:
        config, runtime, counters = self.config, self.runtime, self.counters
        steps_per_collect = config.env.num_envs * config.placement.actor_steps_per_call
        weights = runtime.call(self.learner, "weights")
        collects_since_refresh = [0] * len(self.actors)
        in_flight: dict[Any, int] = {}
        for index, actor in enumerate(self.actors):
            runtime.call(actor, "set_weights", weights)
            in_flight[runtime.call(actor, "collect", config.placement.actor_steps_per_call)] = index
        learning_origin: tuple[int, int] | None = None  # (env_steps, updates) when learning began
        next_eval = self._next_multiple(config.evaluation.every_steps)
        next_log = self._next_multiple(config.logging.every_steps)
        next_checkpoint = self._next_multiple(config.checkpoint.every_steps)
        started = time.perf_counter() - counters.wall_s
        evaluated_at = -1

        while counters.env_steps < config.total_steps:
            # collect -> insert: each finished batch goes to the shards as a future
            for batch in runtime.wait(list(in_flight), num_returns=1):
                index = in_flight.pop(batch)
                for shard in self.shards:
                    runtime.call(shard, "add", batch)
                counters.env_steps += steps_per_collect
                self.progress.advance(steps_per_collect)
                collects_since_refresh[index] += 1
                if collects_since_refresh[index] >= config.placement.weight_refresh_steps:
                    runtime.call(self.actors[index], "set_weights", weights)
                    collects_since_refresh[index] = 0
                in_flight[runtime.call(self.actors[index], "collect", config.placement.actor_steps_per_call)] = index

            # sample -> update -> priorities back, as many updates as the replay ratio owes
            if learning_origin is None and self._replay_size() >= config.algorithm.learning_starts:
                learning_origin = (counters.env_steps, counters.updates)
            if learning_origin is not None:
                owed = learning_origin[1] + int(config.algorithm.replay_ratio * (counters.env_steps - learning_origin[0]))
                if owed > counters.updates:
                    self._update(owed - counters.updates)
                    weights = runtime.call(self.learner, "weights")

            counters.wall_s = time.perf_counter() - started
            if counters.env_steps >= next_log:
                next_log = self._next_multiple(config.logging.every_steps)
                self._log_training()
            if counters.env_steps >= next_eval:
                next_eval = self._next_multiple(config.evaluation.every_steps)
                evaluated_at = counters.env_steps
                if self._evaluate(weights):
                    break
            if counters.env_steps >= next_checkpoint:
                next_checkpoint = self._next_multiple(config.checkpoint.every_steps)
                self.save("latest")

        if evaluated_at != counters.env_steps:
            self._evaluate(weights)
        self.save("latest")
        self.progress.close()
        self.metrics.close()
        return counters

    # -- the phases -------------------------------------------------------------------------
    def _next_multiple(self, every: int) -> int:
        return (self.counters.env_steps // every + 1) * every

    def _replay_size(self) -> int:
        sizes = [self.runtime.call(shard, "size") for shard in self.shards]
        return sum(self.runtime.get(size) for size in sizes)

    def _update(self, count: int) -> None:
        algorithm, replay = self.config.algorithm, self.config.replay
        beta = linear_schedule(replay.beta_start, replay.beta_end, self.config.total_steps, self.counters.env_steps)
        for _ in range(count):
            shard = self.shards[self.counters.updates % len(self.shards)]
            sample = self.runtime.call(shard, "sample", algorithm.batch_size, beta)
            self._last_update = self.runtime.call(self.learner, "update", sample)
            self.runtime.call(shard, "update_priorities", self._last_update)
            self.counters.updates += 1

    def _log_training(self) -> None:
        counters = self.counters
        for actor in self.actors:
            stats = self.runtime.get(self.runtime.call(actor, "episode_stats"))
            self._episode_returns += stats["returns"]
            self._episode_lengths += stats["lengths"]
        counters.episodes += len(self._episode_returns)
        steps0, updates0, wall0 = self._log_mark
        elapsed = max(counters.wall_s - wall0, 1e-9)
        record: dict[str, Any] = {
            "env_steps": counters.env_steps,
            "updates": counters.updates,
            "wall_s": round(counters.wall_s, 3),
            "env_steps_per_s": round((counters.env_steps - steps0) / elapsed, 1),
            "updates_per_s": round((counters.updates - updates0) / elapsed, 1),
            "epsilon": round(self.runtime.get(self.runtime.call(self.actors[0], "current_epsilon")), 5),
            "episodes": counters.episodes,
            "replay_size": self._replay_size(),
        }
        if self._episode_returns:
            record["episode_return_mean"] = float(np.mean(self._episode_returns))
            record["episode_length_mean"] = float(np.mean(self._episode_lengths))
        if self._last_update is not None:
            record.update(self.runtime.get(self._last_update).metrics)
        self.metrics.write(record)
        self._log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self._episode_returns, self._episode_lengths = [], []

    def _evaluate(self, weights: Future) -> bool:
        """Score the greedy policy; save `best` on a new high; True when stop_return is reached."""
        counters = self.counters
        result = self.runtime.get(self.runtime.call(self.evaluator, "evaluate", weights))
        mean = float(result.returns.mean())
        counters.last_eval_return = mean
        self.metrics.write({
            "env_steps": counters.env_steps,
            "updates": counters.updates,
            "wall_s": round(counters.wall_s, 3),
            "eval_return_mean": mean,
            "eval_return_std": float(result.returns.std()),
            "eval_episodes": int(len(result.returns)),
            "eval_length_mean": float(result.lengths.mean()),
        })
        self.progress.show_eval(mean)
        if self.config.checkpoint.keep_best and (counters.best_eval_return is None or mean > counters.best_eval_return):
            counters.best_eval_return = mean
            self.save("best")
        stop = self.config.stop_return
        if stop is not None and mean >= stop:
            counters.solved_at_env_steps = counters.env_steps
            counters.solved_at_wall_s = counters.wall_s
            return True
        return False

    def save(self, name: str) -> None:
        tensors, learner_state = self.runtime.get(self.runtime.call(self.learner, "state_dict"))
        state = {"counters": dataclasses.asdict(self.counters), "learner": learner_state}
        save_checkpoint(self.run_dir / "checkpoints", name, self.config, tensors, state)


def train(config: Config, run_dir: Path) -> TrainResult:
    """Train a fresh run in `run_dir` (which must be new or empty)."""
    env_spaces(config.env)  # an env that cannot be made fails here, before anything is written
    prepare_run_dir(run_dir, config)
    return _execute(config, run_dir, Counters(), restore=None)


def resume(run_dir: Path, config: Config | None = None) -> TrainResult:
    """Continue a run from `run_dir/checkpoints/latest`: counters, weights, optimizer, schedules.

    Replay starts empty and refills to `learning_starts` before updates resume.
    """
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest")
    config = config or checkpoint.config
    counters = Counters(**checkpoint.state["counters"])
    return _execute(config, run_dir, counters, restore=(checkpoint.tensors, checkpoint.state["learner"]))


def _execute(config: Config, run_dir: Path, counters: Counters,
             restore: tuple[dict[str, torch.Tensor], dict[str, Any]] | None) -> TrainResult:
    torch.set_num_threads(config.placement.torch_threads)
    runtime = make_runtime(config.placement)
    try:
        run = TrainingRun(config, run_dir, runtime, counters)
        if restore is not None:
            run.restore(*restore)
        try:
            return TrainResult(run_dir, run.run())
        except KeyboardInterrupt:
            run.save("latest")  # so that --resume continues from the moment of the interrupt
            raise
    finally:
        runtime.shutdown()
