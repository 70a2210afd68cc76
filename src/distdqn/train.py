"""The one training loop: collect -> insert -> sample -> update -> priorities back -> publish
weights -> evaluate -> checkpoint, written once against the runtime interface.

It is an event loop over futures: one collect in flight per actor, a window of updates in flight
on the learners, at most one evaluation. Inline futures are done at once, so there it is a plain
synchronous loop, deterministic for a seed; on Ray the same code keeps every role busy and data
goes actor -> shard -> learner as object refs, never through this process.

The replay ratio: after learning starts, `replay_ratio * (env steps since)` update steps are
owed. With `rate_limit = "ratio"`, actors are not relaunched while more than `max_update_lag`
updates are still running, so a slow learner slows the actors instead of drifting the ratio.
With `"unlimited"` (Ape-X), actors run free and the learners keep `max_update_lag` updates queued.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError

from distdqn.checkpoint import (
    CheckpointWriter,
    load_checkpoint,
    load_resume_state,
    non_finite,
    point_link,
    resume_point,
    save_checkpoint,
)
from distdqn.config import Config, config_to_toml, load_config_toml
from distdqn.config_changes import (
    Continued,
    actors_restart_episodes,
    beta_schedule,
    changed_fields,
    describe,
    follow_lr,
    replay_discarded_by,
)
from distdqn.devices import check_devices
from distdqn.envs import env_spaces, frame_box, num_actions, policy_space
from distdqn.errors import CheckpointError, ConfigError, DiskFull, TrainingDiverged, UserError
from distdqn.metrics import MetricsLog, Progress
from distdqn.networks import build_q_network
from distdqn.replay.buffer import replay_bytes
from distdqn.replay.nstep import rediscounted
from distdqn.roles import Actor, Evaluator, Learner, ReplayShard
from distdqn.roles.learner import LearnerGroupBroken
from distdqn.run_files import (
    TEMPORARY_SUFFIX,
    refuse_links_inside,
    refuse_unless_directory,
    refuse_unless_file,
    remove,
    replace_file,
)
from distdqn.run_lock import LOCK_FILE, RunLock
from distdqn.runtime import RoleFailed, Runtime, make_runtime
from distdqn.seeding import role_rng, stream_seed
from distdqn.sharded_head import join_head_rows
from distdqn.stopping import StopSignals
from distdqn.storage import RemoteRun, download_run, is_remote, remote_run
from distdqn.types import ReplayTerms, TransitionBatch, Weights

UPDATE_CHUNK = 8
"""Batches per sample -> update call: small enough that a learner starts while the shard samples
the next chunk, large enough that messages stay few."""


def plan_rows(rng: np.random.Generator, masses: list[float], batch_size: int, num_batches: int) -> np.ndarray:
    """[num_batches, num_shards] rows each batch draws from each shard: a multinomial over the
    shards' priority masses (their sizes under uniform replay), so that a row comes from a shard
    with the probability one buffer holding all of them would give."""
    shares = np.asarray(masses, np.float64)
    return rng.multinomial(batch_size, shares / shares.sum(), size=num_batches)


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
    restarts: dict[str, int] = field(default_factory=dict)
    replay_lost: int = 0
    beta: list[float] | None = None
    """PER's beta schedule as (origin, value, end, horizon) since the last change of it (see
    `config_changes.Schedule`); None: from beta_start at step 0 to beta_end at total_steps."""


@dataclass(frozen=True)
class Reporting:
    """How a tuner (distdqn.tuning) hears from a run: every `every` env steps, and once at the
    end, the loop evaluates the greedy policy, writes `latest` in full (with the replay, where
    `checkpoint.replay` stores it) and calls `send(counters, latest)`. `send` may end the run by
    raising (Tune stops an exploited trial so)."""

    every: int
    send: Callable[[Counters, Path], None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path | str  # a URI for a run on object storage
    counters: Counters
    stopped_by: str | None = None  # the signal that ended the run early (SIGTERM, SIGINT)


def create_run_dir(run_dir: Path) -> bool:
    """Create `run_dir` if it is missing (True if it was); refuse a path that cannot be one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} exists and is not a directory")
    try:
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run directory {run_dir}: {error.strerror or error}") from None
    return created


def prepare_run_dir(run_dir: Path, config: Config) -> None:
    """Make `run_dir` a fresh run: refuse one that holds anything but its lock, then write the
    config. `train` calls it holding the run's lock, so that a second process, refused by the
    lock, has read and written nothing."""
    create_run_dir(run_dir)
    if any(path.name != LOCK_FILE for path in run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} is not empty; use --resume {run_dir} or another --run-dir")
    try:
        replace_file(run_dir / "config.toml", config_to_toml(config).encode())
    except OSError as error:
        raise UserError(f"cannot create run directory {run_dir}: {error.strerror or error}") from None


class TrainingRun:
    """One run's roles, counters and outputs. `run()` is the loop."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        runtime: Runtime,
        counters: Counters,
        stop_signals: StopSignals | None = None,
        resume_state: dict[str, Any] | None = None,
        store: RemoteRun | None = None,
        reporting: Reporting | None = None,
        continued: Continued | None = None,
    ) -> None:
        """`stop_signals`: a SIGTERM or SIGINT it records ends the loop at its next turn.
        `resume_state`: what a checkpoint's `resume.json` holds; the run continues from it exactly.
        `store`: for a run on object storage, mirrors `run_dir` (a staging directory) there.
        `reporting`: a tuner's interval and callback (see `Reporting`).
        `continued`: the checkpoint this run continues, for a resume or an exploit (see
        `config_changes`: what differs from its config takes effect from here).

        The run's files (config.toml for a run from step 0, metrics.jsonl, tb/, placement.json)
        are written last, once the roles are up and `resume_state` has been restored into them:
        a resume refused for what it read leaves the run directory as it was."""
        self.config = config
        self.continued = continued
        # random streams branch off at the resume point unless every role's are restored as saved
        exact = resume_state is not None and (continued is None or not continued.adopted)
        # an exact resume cuts metrics.jsonl at the byte offset its checkpoint recorded
        loop = resume_state.get("loop") if exact and isinstance(resume_state, dict) else None
        self._metrics_offset = loop.get("metrics_offset") if isinstance(loop, dict) else None
        resumed_at = None if continued is None or exact else counters.env_steps
        branch = () if resumed_at is None else (resumed_at,)
        self.run_dir = run_dir
        self.runtime = runtime
        self.counters = counters
        self.stop_signals = stop_signals
        placement = config.placement
        frame_space, action_space = env_spaces(config.env)
        self.store = store
        # a learner restarted on another node reads `latest` from the store
        latest = store.pointer("latest") if store is not None else str(run_dir / "checkpoints" / "latest")
        self.learners = [
            runtime.spawn(
                Learner, config, policy_space(config.env, frame_space), action_space, latest, i, name=f"learner-{i}"
            )
            for i in range(placement.num_learners)
        ]
        # the learners of each data-parallel replica: its head shards, which share every batch
        shards = placement.head_shards
        self.replicas = [self.learners[r : r + shards] for r in range(0, placement.num_learners, shards)]
        self.shards = [
            runtime.spawn(ReplayShard, config, j, frame_space, resumed_at, name=f"shard-{j}")
            for j in range(placement.num_shards)
        ]
        self.actors = [
            runtime.spawn(Actor, config, i, self._actor_progress(), resumed_at, name=f"actor-{i}")
            for i in range(placement.num_actors)
        ]
        evaluation = config.evaluation
        self.evaluator = runtime.spawn(
            Evaluator,
            config.env,
            config.network,
            evaluation.episodes,
            evaluation.epsilon,
            evaluation.max_episode_steps,
            name="evaluator",
        )
        self._locate_roles()
        if placement.num_learners > 1:
            self._form_learner_group()
        self._collects: dict[Any, tuple[int, list]] = {}  # steps future -> (actor index, per-shard batches)
        self._background: list[Any] = []  # calls whose results are only checked for failures
        self._updates: dict[Any, int] = {}  # every learner's update futures, oldest first -> update count
        self._evaluation: Any | None = None
        self._evaluated: tuple[Any, int] | None = None  # (weights future, seed) of the evaluation in flight
        self._weights: Any = None
        self._collects_launched = [0] * len(self.actors)
        self._last_metrics: dict[str, float] = {}
        self._shard_sizes = [0] * len(self.shards)  # latest known sampleable transitions per shard
        self._shard_masses = [0.0] * len(self.shards)  # and their priority masses
        self._asked: list[Any] = []  # (size, mass) calls issued after the last group of updates
        self._plan_rng = role_rng(config.seed, "loop", 0, *branch)
        self._learning_origin: tuple[int, int] | None = None  # (env_steps, updates) when learning began
        self._log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self._role_marks: dict[str, float] = {}
        self._episode_returns: list[float] = []
        self._episode_lengths: list[int] = []
        self._stop = False
        self._evaluation_mark = (-1, 0, 0.0)  # (env_steps, updates, wall_s) of the last evaluation
        self._due = {  # env steps at which the next log line, evaluation and checkpoint are due
            "log": self._next_multiple(config.logging.every_steps),
            "eval": self._next_multiple(config.evaluation.every_steps),
            "checkpoint": self._next_multiple(config.checkpoint.every_steps),
        }
        self._writer = CheckpointWriter(after_save=None if store is None else store.checkpoint_saved)
        self.reporting = reporting
        self._report_due = self._next_multiple(reporting.every) if reporting is not None else 0
        self._reported_at = -1
        self._snapshots = snapshots_replay(config)
        previous = config if continued is None else continued.config
        self._beta = beta_schedule(previous, counters.beta).rebased(
            counters.env_steps, config.replay.beta_end, config.total_steps
        )
        counters.beta = [self._beta.origin, self._beta.value, self._beta.end, self._beta.horizon]
        if resume_state is not None:
            self._restore(resume_state)
        self.metrics = self._open_run_files()
        self.progress = Progress(
            config.total_steps, counters.env_steps, config.logging.progress, config.logging.progress_interval_s
        )

    def _locate_roles(self) -> None:
        """Where every role instance actually runs (written to placement.json with the run's files)."""
        self._handles = {
            "evaluator": self.evaluator,
            **{f"learner-{i}": h for i, h in enumerate(self.learners)},
            **{f"shard-{j}": h for j, h in enumerate(self.shards)},
            **{f"actor-{i}": h for i, h in enumerate(self.actors)},
        }
        futures = {name: self.runtime.where(handle) for name, handle in self._handles.items()}
        self._where = {name: self.runtime.get(future) for name, future in futures.items()}

    def _open_run_files(self) -> MetricsLog:
        """Write the run's own files, none through a link (see distdqn.run_files). A run from
        step 0 (a new one, or one that died before its first checkpoint and starts over) writes
        its config and begins metrics.jsonl and tb/ afresh, so that they hold one run; a resumed
        run cuts metrics.jsonl back to its checkpoint."""
        run_dir = self.run_dir
        if self.continued is None and self.counters.env_steps == 0:
            for name in ("metrics.jsonl", "tb"):
                remove(run_dir / name)
            replace_file(run_dir / "config.toml", config_to_toml(self.config).encode())
        else:
            truncate_metrics(run_dir / "metrics.jsonl", self.counters.env_steps, self._metrics_offset)
        metrics = MetricsLog(run_dir, self.config.logging.tensorboard)
        try:
            self._write_placement()
            if self.store is not None:
                self.store.sync()  # config.toml and placement.json
        except BaseException:
            metrics.close()
            raise
        return metrics

    def _write_placement(self) -> None:
        replace_file(self.run_dir / "placement.json", json.dumps(self._where, indent=1, sort_keys=True).encode())

    def _actor_progress(self) -> int:
        return self.counters.env_steps // self.config.placement.num_actors

    def _form_learner_group(self) -> None:
        """The learners' torch.distributed group. Learners that all run on one node meet at a file
        there and talk over loopback, so nothing listens on the network; otherwise learner 0's
        host is the meeting point (an unauthenticated TCP store: see README, Security)."""
        runtime = self.runtime
        places = [runtime.get(runtime.where(learner)) for learner in self.learners]
        if len({place["node_id"] for place in places}) == 1:
            init_method = "file://" + runtime.get(runtime.call(self.learners[0], "meeting_file"))
        else:
            port = runtime.get(runtime.call(self.learners[0], "free_port"))
            init_method = f"tcp://{places[0]['node_ip']}:{port}"
        joins = [
            runtime.call(learner, "join_group", init_method, rank, len(self.learners))
            for rank, learner in enumerate(self.learners)
        ]
        for join in joins:
            runtime.get(join)

    # -- the loop ---------------------------------------------------------------------------
    def _stop_requested(self) -> bool:
        return self.stop_signals is not None and self.stop_signals.requested is not None

    def run(self) -> Counters:
        config, counters, due = self.config, self.counters, self._due
        started = time.perf_counter() - counters.wall_s
        self._publish_weights()
        pending = {index for index, _ in self._collects.values()}  # restored from a checkpoint
        for index in range(len(self.actors)):
            if index not in pending:
                self._launch_collect(index)

        while counters.env_steps < config.total_steps and not self._stop and not self._stop_requested():
            in_flight = [*self._collects, *self._updates, *([self._evaluation] if self._evaluation else [])]
            for future in self.runtime.wait(in_flight, num_returns=1):
                if future in self._collects:
                    self._insert(future)
                elif future is self._evaluation:
                    self._finish_evaluation()
                else:
                    self._finish_update(future)
            self._issue_updates()
            self._harvest_background()
            counters.wall_s = time.perf_counter() - started
            if counters.env_steps >= due["log"]:
                due["log"] = self._next_multiple(config.logging.every_steps)
                self._log_training()
            if counters.env_steps >= due["eval"] and self._evaluation is None:
                due["eval"] = self._next_multiple(config.evaluation.every_steps)
                self._start_evaluation()
            if counters.env_steps >= due["checkpoint"]:
                due["checkpoint"] = self._next_multiple(config.checkpoint.every_steps)
                self.save("latest")
            if self.reporting is not None and counters.env_steps >= self._report_due:
                self._report_due = self._next_multiple(self.reporting.every)
                self._report()

        if self._stop_requested() and self._snapshots:
            return self._stop_with_snapshot()
        self._drain()
        if self._evaluation is not None and not self._stop_requested():
            self._finish_evaluation()
        if not self._stop and not self._stop_requested() and self._evaluation_mark[0] != counters.env_steps:
            self._start_evaluation()
            self._finish_evaluation()
        if self._log_mark[0] != counters.env_steps:
            self._log_training()
        self.save("latest")
        self._close()
        if self.reporting is not None and self._reported_at != counters.env_steps:
            self.reporting.send(counters, self.run_dir / "checkpoints" / "latest")
        return counters

    def _report(self) -> None:
        """Give the tuner this point of the run: an evaluation at this env step and a complete
        `latest`. If `send` ends the run (an exploited trial), the logs are closed first."""
        assert self.reporting is not None
        if self._evaluation is not None:
            self._finish_evaluation()
        if self._evaluation_mark[0] != self.counters.env_steps:
            self._due["eval"] = self._next_multiple(self.config.evaluation.every_steps)
            self._start_evaluation()
            self._finish_evaluation()
        self.save("latest")
        self._writer.wait()
        self._reported_at = self.counters.env_steps
        try:
            self.reporting.send(self.counters, self.run_dir / "checkpoints" / "latest")
        except BaseException:
            self._close()
            raise

    def _stop_with_snapshot(self) -> Counters:
        """Stopped by a signal: `latest` takes everything in flight as it is (no drain, which
        would drop the actors' pending batches), so that `--resume` continues exactly here. The
        training line logged after it is for the user; a resume drops it again."""
        self.save("latest")
        if self._log_mark[0] != self.counters.env_steps:
            self._log_training()
        self._close()
        return self.counters

    def _close(self) -> None:
        """Finish the checkpoint being written, then close the logs."""
        try:
            self._writer.close()
        finally:
            self.progress.close()
            self.metrics.close()

    # -- collect and insert ---------------------------------------------------------------
    def _launch_collect(self, index: int) -> None:
        """Relaunch actor `index`; it pulls the latest weights every `weight_refresh_steps` collects."""
        actor = self.actors[index]
        if self._collects_launched[index] % self.config.placement.weight_refresh_steps == 0:
            self._fire(actor, "set_weights", self._weights)
        self._collects_launched[index] += 1
        *batches, steps = self.runtime.call(
            actor, "collect", self.config.placement.actor_steps_per_call, num_returns=len(self.shards) + 1
        )
        self._collects[steps] = (index, batches)

    def _insert(self, steps_future: Any) -> None:
        """Hand a finished batch to the shards (as a future) and relaunch its actor."""
        index, batches = self._collects.pop(steps_future)
        try:
            steps = self.runtime.get(steps_future)  # small; raises if the actor died
            for shard, batch in zip(self.shards, batches, strict=True):
                self._fire(shard, "add", batch)
            self.counters.env_steps += steps
            self.progress.advance(steps)
        except RoleFailed:
            self._reconcile_restarts()
        self._throttle()
        self._launch_collect(index)

    def _throttle(self) -> None:
        """The rate limiter: while the learners lag more than max_update_lag updates, wait."""
        placement = self.config.placement
        if placement.rate_limit != "ratio":
            return
        while self._updates_in_flight() > placement.max_update_lag:
            oldest = next(iter(self._updates))
            for future in self.runtime.wait([oldest]):
                self._finish_update(future)

    # -- sample, update, priorities back ----------------------------------------------------
    def _owed_updates(self) -> int:
        algorithm, placement = self.config.algorithm, self.config.placement
        if self._learning_origin is None:
            if sum(self._refresh_shard_sizes()) < algorithm.learning_starts:
                return 0
            self._learning_origin = (self.counters.env_steps, self.counters.updates)
        if placement.rate_limit == "unlimited":
            return max(0, placement.max_update_lag - self._updates_in_flight())
        steps, updates = self._learning_origin
        return updates + int(algorithm.replay_ratio * (self.counters.env_steps - steps)) - self.counters.updates

    def _issue_updates(self) -> None:
        """Send the owed updates to each learner in chunks. Every batch draws its rows from all
        shards, as many from each as a multinomial over their priority masses gives, so that replay
        is sampled as one buffer however the shards differ in size; masses are those the shards
        reported after the previous group (one group stale where shards run apart). Once every
        learner's chunks are sent the priorities are written back, so a shard sees all of a
        group's samples before any priority write, exactly as if the group were one call, while a
        learner can start on its first chunk as the next is sampled. All calls are chained futures."""
        owed = self._owed_updates()
        if owed <= 0:
            return
        self._read_shard_contents()
        if sum(self._shard_masses) <= 0:  # nothing to draw from (shards restarted empty): ask again
            self._ask_shard_contents()
            return
        beta = self._beta.at(self.counters.env_steps)
        writes = []
        for replica in self.replicas:
            rows = plan_rows(self._plan_rng, self._shard_masses, self.config.algorithm.batch_size, owed)
            for start in range(0, owed, UPDATE_CHUNK):
                writes += self._send_chunk(replica, rows[start : start + UPDATE_CHUNK], beta)
        for shard, result in writes:
            self._fire(shard, "update_priorities", result)
        self.counters.updates += owed
        self._publish_weights()
        self._ask_shard_contents()

    def _send_chunk(self, replica: list[Any], rows: np.ndarray, beta: float) -> list[tuple[Any, Any]]:
        """One update call on each learner of `replica` on the batches whose rows per shard are
        `rows` ([batches, shards]): one sample call per shard that gives rows, shared by the
        replica's head shards. Returns (shard, update future) for priority writes: the first head
        shard's (every shard of a replica computes the same |TD errors|)."""
        total_size, total_mass = sum(self._shard_sizes), sum(self._shard_masses)
        used = [j for j in range(len(self.shards)) if rows[:, j].any()]
        samples = [
            self.runtime.call(
                self.shards[j], "sample", rows[:, j].tolist(), beta, total_size, self._shard_masses[j] / total_mass
            )
            for j in used
        ]
        results = [self.runtime.call(learner, "update", self.counters.env_steps, *samples) for learner in replica]
        for result in results:
            self._updates[result] = len(rows)
        return [(self.shards[j], results[0]) for j in used]

    def _finish_update(self, future: Any) -> None:
        """Take a finished update's metrics. One already taken (the throttle waits for the oldest
        while the loop holds a list of finished ones), or dropped by a learner-group recovery,
        has nothing left to take."""
        if self._updates.pop(future, None) is None:
            return
        try:
            metrics = self.runtime.get(future).metrics
            if metrics:
                self._last_metrics = metrics
                if not math.isfinite(metrics["loss"]):
                    raise self._diverged(f"the loss is {metrics['loss']}")
        except (RoleFailed, LearnerGroupBroken) as failure:
            if isinstance(failure, RoleFailed):
                self._reconcile_restarts()
            if len(self.learners) > 1:
                self._recover_learner_group()
            self._publish_weights()

    def _recover_learner_group(self) -> None:
        """After a learner died, every learner reloads `checkpoints/latest` (so that all are
        identical again) and the all-reduce group is formed anew. Updates in flight are lost."""
        pending, self._updates = list(self._updates), {}
        for future in pending:
            try:
                self.runtime.get(future)
            except (RoleFailed, LearnerGroupBroken):
                pass
        self._reconcile_restarts()
        for future in [self.runtime.call(learner, "reload") for learner in self.learners]:
            self.runtime.get(future)
        self._form_learner_group()

    def _updates_in_flight(self) -> int:
        """Update steps sent but not finished (each learner runs every step)."""
        return sum(self._updates.values()) // len(self.learners)

    def _publish_weights(self) -> None:
        """The first learner's weights; with a split head, its replica's shards gather them there."""
        self._weights, *gathering = self._call_replica("weights")
        self._background += gathering

    def _call_replica(self, method: str) -> list[Any]:
        """Call `method` on every learner of the first replica (its head shards)."""
        return [self.runtime.call(learner, method) for learner in self.replicas[0]]

    def _drain(self) -> None:
        """Let every call in flight finish."""
        while self._updates:
            for future in self.runtime.wait(list(self._updates), num_returns=len(self._updates)):
                self._finish_update(future)
        for future in self._collects:
            try:
                self.runtime.get(future)
            except RoleFailed:
                self._reconcile_restarts()
        self._collects.clear()
        while self._background:
            self.runtime.wait(self._background, num_returns=len(self._background))
            self._harvest_background()

    # -- faults ---------------------------------------------------------------------------
    def _reconcile_restarts(self) -> None:
        """A call failed because a role died. Count each death once, however many calls it
        failed: wait for the runtime to bring every role back and compare process ids (the failed
        call may name the role whose result it only consumed). A restarted shard comes back
        empty; its loss is counted."""
        for name in self._handles:
            where = self._where_when_up(name)
            if where["pid"] == self._where[name]["pid"]:
                continue
            self._where[name] = where
            kind, _, index = name.partition("-")
            self.counters.restarts[kind] = self.counters.restarts.get(kind, 0) + 1
            if kind == "shard":
                self.counters.replay_lost += self._shard_sizes[int(index)]
                self._shard_sizes[int(index)], self._shard_masses[int(index)] = 0, 0.0
            if kind == "actor":
                self._background.append(self.runtime.call(self._handles[name], "set_progress", self._actor_progress()))
        self._write_placement()

    def _where_when_up(self, name: str, timeout: float = 300.0) -> dict[str, Any]:
        """Where a role runs, waiting while its runtime restarts it; RoleFailed if it is gone for good."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.runtime.get(self.runtime.where(self._handles[name]))
            except RoleFailed as failure:
                if not failure.restarting or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _fire(self, handle: Any, method: str, *args: Any) -> None:
        """A call whose result nobody needs; it is still checked, for a dead role."""
        self._background.append(self.runtime.call(handle, method, *args))

    def _harvest_background(self) -> None:
        done = self.runtime.wait(self._background, num_returns=len(self._background), timeout=0)
        for future in done:
            self._background.remove(future)
            try:
                self.runtime.get(future)
            except RoleFailed:
                self._reconcile_restarts()
            except LearnerGroupBroken:
                pass  # priorities of an update the broken group never made

    def _refresh_shard_sizes(self) -> list[int]:
        """Every shard's sampleable size (and mass) now, waiting for the answers."""
        self._ask_shard_contents()
        self._read_shard_contents()
        return self._shard_sizes

    def _ask_shard_contents(self) -> None:
        """Ask every shard for its size and mass. Asked right after a group of updates is sent and
        read when the next one is planned, an answer is queued behind that group's samples only,
        so it is normally ready by then and the loop does not wait on a busy shard."""
        self._asked = [self.runtime.call(shard, "size_and_mass") for shard in self.shards]

    def _read_shard_contents(self) -> None:
        """Take in the answers to the last ask, if not yet read."""
        asked, self._asked = self._asked, []
        for index, future in enumerate(asked):
            try:
                size, mass, pid = self.runtime.get(future)
            except RoleFailed:
                self._reconcile_restarts()
                continue
            if pid != self._where[f"shard-{index}"]["pid"]:  # restarted since: count what the old one held
                self._reconcile_restarts()
            self._shard_sizes[index], self._shard_masses[index] = size, mass

    # -- evaluation, logs, checkpoints --------------------------------------------------------
    def _next_multiple(self, every: int) -> int:
        return (self.counters.env_steps // every + 1) * every

    def _start_evaluation(self) -> None:
        """Score the latest published weights on episodes seeded by the env-step count, so that a
        resumed run evaluates as the uninterrupted one would and any score can be reproduced."""
        seed = stream_seed(self.config.seed, "evaluator", 1, self.counters.env_steps)
        self._evaluation = self.runtime.call(self.evaluator, "evaluate", self._weights, seed)
        self._evaluated = (self._weights, seed)
        self._evaluation_mark = (self.counters.env_steps, self.counters.updates, self.counters.wall_s)

    def _finish_evaluation(self) -> None:
        """Log the greedy policy's score; save `best` on a new high; stop at stop_return."""
        future, self._evaluation = self._evaluation, None
        assert self._evaluated is not None
        weights_future, seed = self._evaluated
        try:
            result = self.runtime.get(future)
        except RoleFailed:
            self._reconcile_restarts()
            return
        counters = self.counters
        env_steps, updates, wall_s = self._evaluation_mark
        mean = float(result.returns.mean())
        counters.last_eval_return = mean
        self.metrics.write(
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
        self.progress.show_eval(mean)
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
            self._stop = True

    def _stats(self, handles: list[Any]) -> list[dict[str, float] | None]:
        futures = [self.runtime.call(handle, "stats") for handle in handles]
        stats: list[dict[str, float] | None] = []
        for future in futures:
            try:
                stats.append(self.runtime.get(future))
            except RoleFailed:
                self._reconcile_restarts()
                stats.append(None)
        return stats

    def _rate(self, key: str, value: float, elapsed: float) -> float:
        previous = self._role_marks.get(key, value)
        self._role_marks[key] = value
        return round(max(value - previous, 0) / elapsed, 1)

    def _log_training(self) -> None:
        counters = self.counters
        for actor in self.actors:
            try:
                stats = self.runtime.get(self.runtime.call(actor, "episode_stats"))
            except RoleFailed:
                self._reconcile_restarts()
                continue
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
            "episodes": counters.episodes,
            "replay_size": sum(self._refresh_shard_sizes()),
        }
        if self._episode_returns:
            record["episode_return_mean"] = float(np.mean(self._episode_returns))
            record["episode_length_mean"] = float(np.mean(self._episode_lengths))
        record.update(self._last_metrics)
        record.update(self._role_metrics(elapsed))
        record.update({f"restarts_{kind}": count for kind, count in sorted(counters.restarts.items())})
        if counters.restarts:
            record["replay_lost"] = counters.replay_lost
        self.metrics.write(record)
        self._log_mark = (counters.env_steps, counters.updates, counters.wall_s)
        self._episode_returns, self._episode_lengths = [], []

    def _role_metrics(self, elapsed: float) -> dict[str, float]:
        """Per-role throughput and weight lag; in one process only the epsilon is new (roles
        there move in lockstep)."""
        actor_stats = self._stats(self.actors)
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

    def _save_best(self, weights_future: Any, evaluation: dict[str, Any]) -> None:
        """`best` holds exactly the weights the evaluator scored, not the learner's weights when
        the score arrived (on Ray the learner moved on meanwhile); its state names their version
        and the evaluation's seed, so `distdqn evaluate best --seed S --episodes N` gives the score."""
        try:
            weights = self.runtime.get(weights_future)
        except RoleFailed:
            self._reconcile_restarts()
            return
        tensors = {f"online.{name}": torch.from_numpy(np.array(value)) for name, value in weights.tensors.items()}
        state = {
            "counters": dataclasses.asdict(self.counters),
            "evaluation": {**evaluation, "weights_version": weights.version},
        }
        try:
            save_checkpoint(self.run_dir / "checkpoints", "best", self.config, tensors, state)
        except ValueError as error:
            raise self._diverged(f"the evaluated {error}") from None
        if self.store is not None:
            self.store.upload_best()

    def save(self, name: str) -> None:
        """Write checkpoint `name`: the learner's state and, with replay snapshots, every role's,
        all taken at this one point of the loop, then written on the checkpoint thread while
        training goes on. A role that died meanwhile skips this checkpoint (the last one stays)."""
        try:
            resume = self._snapshot() if self._snapshots else None
            parts = [self.runtime.get(future) for future in self._call_replica("state_dict")]
            tensors, learner_state = join_head_rows(parts)
        except RoleFailed:
            self._reconcile_restarts()
            return
        bad = non_finite(tensors)
        if bad:
            raise self._diverged(f"the learner's tensors {bad[:3]} hold NaN or inf")
        tensors = {key: value.detach().clone() for key, value in tensors.items()}  # the learner goes on
        state = {"counters": dataclasses.asdict(self.counters), "learner": learner_state}
        checkpoint = self.config.checkpoint
        self._writer.submit(
            self.run_dir / "checkpoints",
            name,
            self.config,
            tensors,
            state,
            checkpoint.keep,
            resume,
            checkpoint.replay_codec,
        )

    # -- exact resume -------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """Every role's state at this point of the loop, and what is in flight between roles:
        actors' finished batches not yet inserted, and the evaluation under way. Updates in
        flight are finished first, as the loop's next turn would finish them, so the learner's
        state and the priorities it sent back are in the cut. Each role takes its snapshot call
        after every call made to it before, so shards hold every batch inserted so far."""
        runtime = self.runtime
        while self._updates:
            for future in runtime.wait(list(self._updates), num_returns=len(self._updates)):
                self._finish_update(future)
        self._read_shard_contents()
        shards = [runtime.call(shard, "snapshot") for shard in self.shards]
        actors = [runtime.call(actor, "snapshot") for actor in self.actors]
        pending = [
            {
                "actor": index,
                "steps": runtime.get(steps),
                "batches": [runtime.get(batch)._asdict() for batch in batches],
            }
            for steps, (index, batches) in self._collects.items()
        ]
        evaluation = None
        if self._evaluation is not None and self._evaluated is not None:
            weights_future, seed = self._evaluated
            weights = runtime.get(weights_future)
            evaluation = {
                "seed": seed,
                "mark": list(self._evaluation_mark),
                "weights_version": weights.version,
                "weights": weights.tensors,
            }
        return {
            "layout": snapshot_layout(self.config),
            "loop": self._loop_state(),
            "shards": [runtime.get(future) for future in shards],
            "actors": [runtime.get(future) for future in actors],
            "pending": pending,
            "evaluation": evaluation,
        }

    def _loop_state(self) -> dict[str, Any]:
        return {
            "plan_rng": self._plan_rng.bit_generator.state,
            "learning_origin": self._learning_origin,
            "due": dict(self._due),
            "log_mark": list(self._log_mark),
            "evaluation_mark": list(self._evaluation_mark),
            "last_metrics": dict(self._last_metrics),
            "collects_launched": list(self._collects_launched),
            "shard_sizes": list(self._shard_sizes),
            "shard_masses": list(self._shard_masses),
            "role_marks": dict(self._role_marks),
            "episode_returns": list(self._episode_returns),
            "episode_lengths": list(self._episode_lengths),
            "metrics_offset": self.metrics.position,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        """Put every role, and the loop, back where `_snapshot` found them; a state that does not
        fit (a hand-edited or foreign `resume.json`) is refused in one line."""
        try:
            self._restore_roles_and_loop(state)
        except (CheckpointError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
            cause = getattr(error, "cause", None) or error  # Ray wraps a role's error with its traceback
            detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            raise CheckpointError(
                f"checkpoint {self.run_dir / 'checkpoints' / 'latest'}: resume.json does not fit this run ({detail})"
            ) from None

    def _restore_roles_and_loop(self, state: dict[str, Any]) -> None:
        """Restore as saved, then apply what the config changed since (see `config_changes`)."""
        runtime, config = self.runtime, self.config
        before = config if self.continued is None else self.continued.config
        own_streams = self.continued is not None and self.continued.adopted
        built_under = ReplayTerms(before.algorithm.gamma, before.replay.alpha, before.replay.priority_eps)
        new_episodes = own_streams or actors_restart_episodes(before, config)  # a donor's envs hold its streams
        calls = [
            runtime.call(shard, "restore", part, built_under, own_streams)
            for shard, part in zip(self.shards, state["shards"], strict=True)
        ] + [
            runtime.call(actor, "restore", part, new_episodes, own_streams)
            for actor, part in zip(self.actors, state["actors"], strict=True)
        ]
        for call in calls:
            runtime.get(call)
        loop = state["loop"]
        if not own_streams:
            self._plan_rng.bit_generator.state = loop["plan_rng"]
        origin = loop["learning_origin"]
        self._learning_origin = None if origin is None else (int(origin[0]), int(origin[1]))
        if origin is not None and _rate_changed(before, config):  # the new ratio holds from here on
            self._learning_origin = (self.counters.env_steps, self.counters.updates)
        self._due = {key: int(loop["due"][key]) for key in self._due}
        for key, every in (
            ("log", lambda c: c.logging.every_steps),
            ("eval", lambda c: c.evaluation.every_steps),
            ("checkpoint", lambda c: c.checkpoint.every_steps),
        ):
            if every(before) != every(config):
                self._due[key] = self._next_multiple(every(config))
        self._log_mark = _mark(loop["log_mark"])
        self._evaluation_mark = _mark(loop["evaluation_mark"])
        self._last_metrics = {str(key): float(value) for key, value in loop["last_metrics"].items()}
        self._collects_launched = [int(count) for count in loop["collects_launched"]]
        self._shard_sizes = [int(size) for size in loop["shard_sizes"]]
        self._shard_masses = [float(mass) for mass in loop["shard_masses"]]
        self._role_marks = {str(key): float(value) for key, value in loop["role_marks"].items()}
        self._episode_returns = [float(x) for x in loop["episode_returns"]]
        self._episode_lengths = [int(x) for x in loop["episode_lengths"]]
        gamma = config.algorithm.gamma if before.algorithm.gamma != config.algorithm.gamma else None
        for item in state["pending"]:
            batches = [runtime.put(_continued_batch(TransitionBatch(**batch), gamma)) for batch in item["batches"]]
            self._collects[runtime.put(int(item["steps"]))] = (int(item["actor"]), batches)
        evaluation = state["evaluation"]
        if evaluation is not None:
            weights = runtime.put(Weights(int(evaluation["weights_version"]), evaluation["weights"]))
            seed = int(evaluation["seed"])
            self._evaluation = runtime.call(self.evaluator, "evaluate", weights, seed)
            self._evaluated = (weights, seed)
            self._evaluation_mark = _mark(evaluation["mark"])

    def _diverged(self, what: str) -> TrainingDiverged:
        """Stop the run: nothing non-finite is saved, so `latest` keeps the last finite weights."""
        return TrainingDiverged(f"training diverged at env step {self.counters.env_steps} ({what}); {self._kept()}")

    def disk_full(self, error: OSError) -> DiskFull:
        """Stop the run: a checkpoint is linked only once complete, so `latest` is intact."""
        where = error.filename or self.run_dir
        return DiskFull(f"the disk is full (writing {where}) at env step {self.counters.env_steps}; {self._kept()}")

    def _kept(self) -> str:
        """What `--resume` would continue from. A checkpoint being written when the run stopped
        may not have become `latest`: the last one written in full is named."""
        try:
            self._writer.wait()
        except OSError:
            pass  # a write that failed never became `latest`
        latest = self.run_dir / "checkpoints" / "latest"
        try:
            steps = load_checkpoint(latest).state["counters"]["env_steps"]
        except (CheckpointError, KeyError, TypeError):
            return "no checkpoint was written"
        return f"checkpoints/latest keeps env step {steps}"


def train(
    config: Config, run_dir: Path | str, store: RemoteRun | None = None, reporting: Reporting | None = None
) -> TrainResult:
    """Train a fresh run in `run_dir` (which must be new or empty; a URI: see distdqn.storage)."""
    if not str(run_dir).strip():
        raise UserError("--run-dir is empty: name the directory the run goes in")
    # an env that cannot be made fails here, before anything is written
    frame_space, action_space = env_spaces(config.env)
    check_replay_fits(config, frame_box(frame_space))
    check_head_splits(config, action_space)
    check_devices(config)
    if is_remote(run_dir):
        with remote_run(str(run_dir), resume=False) as remote:
            return dataclasses.replace(train(config, remote.staging, remote, reporting), run_dir=remote.uri)
    run_dir = Path(run_dir)
    created_dir = create_run_dir(run_dir)
    created_lock = not os.path.lexists(run_dir / LOCK_FILE)
    with RunLock(run_dir):  # before anything in the directory is read or written
        try:
            prepare_run_dir(run_dir, config)
        except UserError:
            _remove_own_lock(run_dir, created_lock, created_dir)
            raise
        try:
            return _execute(config, run_dir, Counters(), store=store, reporting=reporting)
        except UserError:
            _remove_unstarted_run(run_dir, keep=(LOCK_FILE,))
            if not (run_dir / "checkpoints").exists():
                _remove_own_lock(run_dir, created_lock, created_dir)
            raise


def _remove_own_lock(run_dir: Path, created_lock: bool, created_dir: bool) -> None:
    """Leave a refused run's directory as it was found: the lock file and the directory go only
    if this process made them (and the directory only if nothing else is in it)."""
    if created_lock:
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
    if created_dir and not any(run_dir.iterdir()):
        run_dir.rmdir()


def check_head_splits(config: Config, action_space: gym.Space) -> None:
    """A head of N actions splits over at most N learners."""
    shards, actions = config.placement.head_shards, num_actions(action_space)
    if shards > actions:
        raise UserError(f"placement.head_shards={shards} splits a head of {actions} actions: at most {actions}")


def check_replay_fits(config: Config, frames: gym.spaces.Box) -> None:
    """Refuse, in one line, a replay larger than this machine's memory, before allocating it (a
    replay.capacity of 10**12 ended in NumPy's allocation traceback). Roles on other Ray nodes
    are not checked here: their memory is theirs."""
    if config.placement.runtime == "ray" and config.placement.address is not None:
        return
    needed = _replay_bytes(config, frames)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > available:
        raise UserError(
            f"replay.capacity={config.replay.capacity} needs {needed / 2**30:,.1f} GiB of replay "
            f"memory ({needed // config.replay.capacity} bytes a transition); this machine has "
            f"{available / 2**30:,.1f} GiB"
        )


def _rate_changed(before: Config, after: Config) -> bool:
    """Whether the rate limiter's terms changed: it then re-bases at the point of change."""
    return (before.algorithm.replay_ratio, before.placement.rate_limit) != (
        after.algorithm.replay_ratio,
        after.placement.rate_limit,
    )


def _continued_batch(batch: TransitionBatch, gamma: float | None) -> TransitionBatch:
    """An actor's batch saved in flight, under a new `gamma` where one is given (its one-step
    returns keep; their bootstrap discounts are recomputed as the shards recompute theirs)."""
    if gamma is None:
        return batch
    return batch._replace(discounts=rediscounted(batch.discounts, batch.offsets, gamma))


def _mark(saved: list) -> tuple[int, int, float]:
    """An (env_steps, updates, wall_s) mark as a snapshot's JSON holds it."""
    env_steps, updates, wall_s = saved
    return int(env_steps), int(updates), float(wall_s)


SNAPSHOT_AUTO_BYTES = 1 << 30
"""`checkpoint.replay = "auto"` stores replays up to this size: a few seconds to write."""


def snapshots_replay(config: Config) -> bool:
    """Whether `latest` holds the replay and every role's state (`checkpoint.replay`)."""
    if config.checkpoint.replay != "auto":
        return config.checkpoint.replay
    return _replay_bytes(config, frame_box(env_spaces(config.env)[0])) <= SNAPSHOT_AUTO_BYTES


def _replay_bytes(config: Config, frames: gym.spaces.Box) -> int:
    """What the whole replay preallocates, over all shards (see `replay_bytes`)."""
    return replay_bytes(config.replay.capacity, frames.shape, frames.dtype)


def snapshot_layout(config: Config) -> dict[str, Any]:
    """What the shapes of the roles' states depend on: a snapshot restores only into the same."""
    return {
        "env": config.env.id,
        "num_envs": config.env.num_envs,
        "frame_stack": config.env.frame_stack,
        "num_actors": config.placement.num_actors,
        "num_shards": config.placement.num_shards,
        "capacity": config.replay.capacity,
        "n_step": config.algorithm.n_step,
    }


def _remove_unstarted_run(run_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what a new run left in the directory it found empty when it stopped before its
    first checkpoint (a refused start, or one that diverged at once), so that the same command
    can run again; a run with checkpoints is never touched. (A run killed before its first
    checkpoint is started over by `resume`, which begins its files afresh.)"""
    if os.path.lexists(run_dir / "checkpoints"):
        return
    for path in run_dir.iterdir():
        if path.name not in keep:
            remove(path)


def resumable_config(run_dir: Path | str) -> tuple[Config, Path | str]:
    """The config `--resume run_dir` continues with, and the file it comes from: the latest
    checkpoint's, or, for a run that died before its first checkpoint, the run's config.toml."""
    if is_remote(run_dir):
        with tempfile.TemporaryDirectory(prefix="distdqn-run-") as staging:
            download_run(str(run_dir), Path(staging), replay=False)
            config, origin = resumable_config(Path(staging))
            return config, f"{str(run_dir).rstrip('/')}/{Path(origin).relative_to(staging).as_posix()}"
    run_dir = Path(run_dir)
    latest = run_dir / "checkpoints" / "latest"
    start = resume_point(latest.parent)
    if start is not None or not (run_dir / "config.toml").is_file():
        return load_checkpoint(start or latest).config, start or latest
    try:
        return load_config_toml(run_dir / "config.toml"), run_dir / "config.toml"
    except ConfigError as error:
        raise CheckpointError(f"cannot resume {run_dir}: {error}") from None


def resume(
    run_dir: Path | str,
    config: Config | None = None,
    store: RemoteRun | None = None,
    reporting: Reporting | None = None,
    adopted: bool = False,
) -> TrainResult:
    """Continue a run from `run_dir/checkpoints/latest`: counters, weights, optimizer, schedules,
    and, where `latest` holds them (`checkpoint.replay`), the replay and every role's state, so
    that the run goes on exactly as if it had never stopped. Otherwise replay starts empty and
    refills to `learning_starts` before updates resume. Where the `latest` link is broken, the
    run goes on from the newest version that verifies (see `checkpoint.resume_point`); only a
    run that died before finishing its first checkpoint starts over from its config.toml, with
    its metrics begun afresh. A URI is downloaded to a staging directory, which
    the run goes on in, mirrored to the URI (see distdqn.storage). `adopted`: `latest` came from
    another run (`adopt_checkpoint`), so this run's metrics are cut at its env steps, not at the
    byte offset the other run's file had, and its random streams branch off at the resume point.
    A `config` that differs from `latest`'s takes effect from here (see distdqn.config_changes).
    """
    if is_remote(run_dir):
        with remote_run(str(run_dir), resume=True) as remote:
            return dataclasses.replace(resume(remote.staging, config, remote, reporting, adopted), run_dir=remote.uri)
    run_dir = Path(run_dir)
    check_run_files(run_dir)
    with RunLock(run_dir):
        checkpoints = run_dir / "checkpoints"
        start = resume_point(checkpoints)
        if start is None and (run_dir / "config.toml").is_file():
            # died before its first checkpoint: start over; a `best` it wrote stands as the bar
            config = config or resumable_config(run_dir)[0]
            check_devices(config)
            counters = Counters(best_eval_return=_best_so_far(checkpoints / "best", None))
            return _execute(config, run_dir, counters, store=store, reporting=reporting)
        start = start or checkpoints / "latest"
        checkpoint = load_checkpoint(start)
        continued = Continued(checkpoint.config, adopted)
        config = checkpoint.config if config is None else follow_lr(checkpoint.config, config)
        check_devices(config)
        counters = _saved_counters(start, checkpoint.state)
        check_learner_tensors(start, checkpoint.tensors, config)
        counters.best_eval_return = _best_so_far(checkpoints / "best", counters.best_eval_return)
        resume_state = _usable_resume_state(start, config, checkpoint.config)
        with _latest_naming(start, counters.env_steps):
            return _execute(config, run_dir, counters, resume_state, store, reporting, continued)


@contextmanager
def _latest_naming(start: Path, env_steps: int) -> Iterator[None]:
    """With `latest` broken, a resume from the version `start` links `latest` to it (a learner
    loads `latest`, and reloads it on recovery); if the run then stops before it writes a
    checkpoint of its own (refused by what it read, say), the link is put back as it was."""
    link = start.parent / "latest"
    if start == link:
        yield
        return
    before = os.readlink(link) if link.is_symlink() else None
    point_link(start.parent, "latest", start.name)
    print(
        f"distdqn: {link} was {'a broken link' if before is not None else 'missing'}; resuming from "
        f"{start.name} (env step {env_steps}), the newest version that verifies",
        file=sys.stderr,
    )
    try:
        yield
    except BaseException:
        if link.is_symlink() and os.readlink(link) == start.name:
            if before is None:
                link.unlink()
            else:
                point_link(start.parent, "latest", before)
        raise


def _usable_resume_state(latest: Path, config: Config, saved: Config) -> dict[str, Any] | None:
    """`latest`'s roles' states, if it holds them and they fit `config` (a resume whose changes
    from the `saved` config leave the stored replay meaningless starts with an empty replay
    instead, and says so in one line)."""
    state = load_resume_state(latest)
    if state is None:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("loop"), dict):
        raise CheckpointError(f"checkpoint {latest}: resume.json holds no loop state")
    discarded = replay_discarded_by(saved, config)
    if discarded:
        print(
            f"distdqn: resuming with an empty replay: {describe(changed_fields(saved, config), discarded)} "
            "changes what the saved replay holds",
            file=sys.stderr,
        )
        return None
    if state.get("layout") != snapshot_layout(config):
        print(
            f"distdqn: {latest} holds a replay for {state.get('layout')}; this config needs "
            f"{snapshot_layout(config)}: resuming with an empty replay",
            file=sys.stderr,
        )
        return None
    return state


RUN_FILES = ("config.toml", "metrics.jsonl", "placement.json", LOCK_FILE)
"""The files a run writes at its top level; each is replaced whole through `<name>.tmp`."""
RUN_DIRECTORIES = ("tb", "checkpoints")


def check_run_files(run_dir: Path) -> None:
    """A run writes only inside its own directory. In a run directory someone else made, a
    `metrics.jsonl` (or its temporary `metrics.jsonl.tmp`) that is a link would have us write to
    its target, and a `checkpoints` link would have us write (and delete old versions) there; a
    link in `tb/` could stand at the name TensorBoard picks for its next file. So, before
    anything is read or written, such a directory is refused in one line, as is a file where a
    directory belongs or the other way round. Hard links need no check: no file is ever written
    through one (see distdqn.run_files)."""
    refuse_unless_directory(run_dir)
    for name in RUN_FILES:
        refuse_unless_file(run_dir / name)
        refuse_unless_file(run_dir / (name + TEMPORARY_SUFFIX))
    for name in RUN_DIRECTORIES:
        refuse_unless_directory(run_dir / name)
    refuse_links_inside(run_dir / "tb")


def _saved_counters(directory: Path, state: dict[str, Any]) -> Counters:
    """The counters a checkpoint holds, checked field by field (a hand-edited or foreign
    `state.json` is refused in one line, not met later as a traceback)."""
    learner = state.get("learner")
    if not (
        isinstance(learner, dict)
        and _is_count(learner.get("updates"))
        and isinstance(learner.get("param_groups"), list)
    ):
        raise CheckpointError(f"checkpoint {directory}: state.json has no valid learner section")
    saved = state.get("counters")
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(Counters)}) if isinstance(saved, dict) else []
    if unknown:
        raise CheckpointError(f"checkpoint {directory}: state.json counters has unknown fields {unknown[:3]}")
    try:
        counters = TypeAdapter(Counters).validate_python(saved)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(f"checkpoint {directory}: state.json counters {where}: {first['msg']}") from None
    assert isinstance(saved, dict)  # validated as Counters
    for name, value in _counts(saved):
        if not _is_count(value):
            raise CheckpointError(
                f"checkpoint {directory}: state.json counters {name} must be a whole number >= 0, got {value!r:.40}"
            )
    for name in ("wall_s", "solved_at_wall_s"):
        seconds = getattr(counters, name)
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise CheckpointError(f"checkpoint {directory}: state.json counters {name} must be >= 0, got {seconds}")
    return counters


COUNTS = ("env_steps", "updates", "episodes", "replay_lost", "solved_at_env_steps")
"""The counters that count things: whole numbers, never negative, never a bool or float."""


def _counts(saved: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, value as saved) of every count in a checkpoint's counters, restarts included."""
    counts = [(name, saved[name]) for name in COUNTS if saved.get(name) is not None]
    restarts = saved.get("restarts")
    if isinstance(restarts, dict):
        counts += [(f"restarts.{kind}", count) for kind, count in restarts.items()]
    return counts


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _best_so_far(best: Path, from_latest: float | None) -> float | None:
    """`best` may be newer than `latest` (a run killed between them): its score still stands,
    so a resumed run replaces `best` only with something better."""
    try:
        recorded = load_checkpoint(best).state["evaluation"]["eval_return_mean"]
    except (CheckpointError, KeyError, TypeError):
        return from_latest  # none yet, or unreadable: the next best evaluation writes a new one
    if type(recorded) not in (int, float) or not math.isfinite(recorded):
        return from_latest  # not a score: the next best evaluation replaces it
    return recorded if from_latest is None else max(recorded, from_latest)


def check_learner_tensors(directory: Path, tensors: dict[str, torch.Tensor], config: Config) -> None:
    """A checkpoint must fit the network its config builds: every online and target tensor, and
    every Adam moment, with its parameter's shape and dtype (a resume with another network or env
    fails here in one line, not inside a learner)."""
    frame_space, action_space = env_spaces(config.env)
    check_head_splits(config, action_space)
    network = build_q_network(config.network, policy_space(config.env, frame_space), action_space)
    expected = {
        f"{copy}.{name}": value for copy in ("online", "target") for name, value in network.state_dict().items()
    }
    for index, parameter in enumerate(network.parameters()):
        for moment in ("exp_avg", "exp_avg_sq"):
            if f"optimizer.{index}.{moment}" in tensors:
                expected[f"optimizer.{index}.{moment}"] = parameter
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"checkpoint {directory} does not fit the config's network: {missing[0]} is missing")
    for name, like in expected.items():
        if tuple(tensors[name].shape) != tuple(like.shape):
            raise CheckpointError(
                f"checkpoint {directory} does not fit the config's network: {name} has shape "
                f"{list(tensors[name].shape)}, the network needs {list(like.shape)}"
            )
        if tensors[name].dtype != like.dtype:
            raise CheckpointError(
                f"checkpoint {directory} does not fit the config's network: {name} is {tensors[name].dtype}, "
                f"the network's is {like.dtype}"
            )


def truncate_metrics(path: Path, env_steps: int, offset: int | None = None) -> None:
    """Drop lines logged after the checkpoint a run resumes from (a crashed run got further than
    its last checkpoint), so that metrics.jsonl reads as one run: cut at `offset`, the file's
    size when the checkpoint was taken, where known and still there; else drop lines of later
    env steps (and partial lines). Rewritten as a new file renamed over it (see
    distdqn.run_files), never through a link."""
    if refuse_unless_file(path) is None:
        return
    logged = path.read_bytes()
    kept = logged[:offset] if isinstance(offset, int) and 0 <= offset <= len(logged) else None
    if kept is None or (kept and not kept.endswith(b"\n")):  # no offset, or not at a line end
        lines = logged.decode(errors="replace").splitlines(keepends=True)
        at_checkpoint = [line for line in lines if (steps := _logged_at(line)) is not None and steps <= env_steps]
        kept = "".join(line.rstrip("\n") + "\n" for line in at_checkpoint).encode()
    if kept != logged:
        replace_file(path, kept)


def _logged_at(line: str) -> int | None:
    """The env steps of a metrics line, or None for a line that is no record: the partial last
    line a crash leaves, or anything else that is not a JSON object with integer `env_steps`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    steps = record.get("env_steps") if isinstance(record, dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _execute(
    config: Config,
    run_dir: Path,
    counters: Counters,
    resume_state: dict[str, Any] | None = None,
    store: RemoteRun | None = None,
    reporting: Reporting | None = None,
    continued: Continued | None = None,
) -> TrainResult:
    """Run the loop; a SIGTERM or SIGINT ends it with `latest` written (see distdqn.stopping)."""
    torch.set_num_threads(config.placement.torch_threads)
    with StopSignals() as stop_signals:
        runtime = make_runtime(config.placement)
        stop_signals.install()
        try:
            run = TrainingRun(
                config, run_dir, runtime, counters, stop_signals, resume_state, store, reporting, continued
            )
            try:
                return TrainResult(run_dir, run.run(), stop_signals.requested)
            except OSError as error:
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise run.disk_full(error) from None
                raise
        finally:
            runtime.shutdown()
