"""The one training loop: collect -> insert -> sample -> update -> priorities back -> publish
weights, with evaluation and checkpoints as named steps, written once against the runtime
interface.

It is an event loop over futures: one collect in flight per actor, a window of updates in flight
on the learners, at most one evaluation. Inline futures are done at once, so there it is a plain
synchronous loop, deterministic for a seed; on Ray the same code keeps every role busy and data
goes actor -> shard -> learner as object refs, never through this process. Everything else a run
does has its own file beside this one: the updates in flight (updates.py), the rate limiter,
evaluation and `best`, the snapshot, the supervisor of restarts, telemetry.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any

from distdqn.config import Config
from distdqn.config_changes import Continued
from distdqn.errors import DiskFull, RoleLost, TrainingDiverged
from distdqn.roles.learner_group import LearnerGroupBroken
from distdqn.run import snapshot
from distdqn.run.callbacks import Callback, CallbackSink
from distdqn.run.checkpoints import Checkpoints
from distdqn.run.counters import Counters, Reporting, next_multiple
from distdqn.run.evaluation import Evaluations
from distdqn.run.metrics import MetricsLog, Progress
from distdqn.run.roles import spawn_roles
from distdqn.run.run_dir import open_run_files
from distdqn.run.shard_contents import ShardContents
from distdqn.run.stopping import StopSignals
from distdqn.run.supervisor import Supervisor
from distdqn.run.telemetry import Telemetry
from distdqn.run.updates import UpdatePipeline
from distdqn.runtime import RoleFailed, Runtime
from distdqn.storage.object_store import RemoteRun


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
        callback: Callback | None = None,
    ) -> None:
        """`stop_signals`: a SIGTERM or SIGINT it records ends the loop at its next turn.
        `resume_state`: what a checkpoint's `resume.json` holds; the run continues from it exactly.
        `store`: for a run on object storage, mirrors `run_dir` (a staging directory) there.
        `reporting`: a tuner's interval and callback (see `Reporting`).
        `continued`: the checkpoint this run continues, for a resume or an exploit (see
        `config_changes`: what differs from its config takes effect from here).
        `callback`: a Python caller's hooks (see distdqn.run.callbacks); one may stop the run.

        The run's files (config.toml for a run from step 0, metrics.jsonl, tb/, placement.json)
        are written last, once the roles are up and `resume_state` has been restored into them:
        a resume refused for what it read leaves the run directory as it was."""
        self.config, self.run_dir, self.runtime, self.counters = config, run_dir, runtime, counters
        self.stop_signals, self.store, self.reporting, self.continued = stop_signals, store, reporting, continued
        self.callbacks = CallbackSink(callback) if callback is not None else None
        # random streams branch off at the resume point unless every role's are restored as saved
        exact = resume_state is not None and (continued is None or not continued.adopted)
        resumed_at = None if continued is None or exact else counters.env_steps
        # a learner restarted on another node reads `latest` from the store
        latest = store.pointer("latest") if store is not None else str(run_dir / "checkpoints" / "latest")
        roles = spawn_roles(config, runtime, latest, self._actor_progress(), resumed_at)
        self.learners, self.replicas, self.shards = roles.learners, roles.replicas, roles.shards
        self.actors, self.evaluator = roles.actors, roles.evaluator
        self.supervisor = Supervisor(runtime, run_dir, roles.handles(), counters, self._restarted, self._role_lost)
        if config.placement.num_learners > 1:
            self.supervisor.form_learner_group(self.learners)
        self.contents = ShardContents(runtime, self.shards, self.supervisor)
        self.evaluations = Evaluations(
            config, runtime, self.evaluator, counters, self.supervisor, run_dir, store, self._diverged
        )
        self.telemetry = Telemetry(
            config, runtime, (self.actors, self.shards, self.learners), counters, self.supervisor
        )
        self.collects: dict[Any, tuple[int, list]] = {}  # steps future -> (actor index, per-shard batches)
        self.collects_launched = [0] * len(self.actors)
        self._background: list[Any] = []  # calls whose results are only checked for failures
        self._stop = False
        self.due = {  # env steps at which the next log line, evaluation and checkpoint are due
            "log": next_multiple(counters.env_steps, config.logging.every_steps),
            "eval": next_multiple(counters.env_steps, config.evaluation.every_steps),
            "checkpoint": next_multiple(counters.env_steps, config.checkpoint.every_steps),
        }
        self.checkpoints = Checkpoints(config, run_dir, store)
        self._report_due = next_multiple(counters.env_steps, reporting.every) if reporting is not None else 0
        self._reported_at = -1
        self.learning = UpdatePipeline(
            config,
            config if continued is None else continued.config,
            runtime,
            roles,
            counters,
            self.contents,
            self.supervisor,
            self.telemetry,
            resumed_at,
            self._background.append,
            self._diverged,
        )
        if resume_state is not None:
            snapshot.restore(self, resume_state)
        # an exact resume cuts metrics.jsonl at the byte offset its checkpoint recorded
        loop = resume_state.get("loop") if exact and isinstance(resume_state, dict) else None
        self.metrics = self._open_run_files(loop.get("metrics_offset") if isinstance(loop, dict) else None)
        self.progress = Progress(
            config.total_steps, counters.env_steps, config.logging.progress, config.logging.progress_interval_s
        )

    def _open_run_files(self, metrics_offset: int | None) -> MetricsLog:
        """The run's own files (see `open_run_files`), and where its roles run."""
        from_start = self.continued is None and self.counters.env_steps == 0
        sinks = [self.callbacks] if self.callbacks is not None else []
        # a run on object storage trains in a staging directory: its W&B name is the URI's
        name = PurePosixPath(self.store.uri.rstrip("/")).name if self.store is not None else None
        metrics = open_run_files(
            self.run_dir, self.config, from_start, self.counters.env_steps, metrics_offset, sinks, name=name
        )
        try:
            self.supervisor.write_placement()
            if self.store is not None:
                self.store.sync()  # config.toml and placement.json
        except BaseException:
            metrics.close()
            raise
        return metrics

    def _actor_progress(self) -> int:
        return self.counters.env_steps // self.config.placement.num_actors

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Counters:
        """The data cycle until total_steps, stop_return or a stop signal; then the last
        evaluation, log line and checkpoint."""
        started = time.perf_counter() - self.counters.wall_s
        self.learning.publish_weights()
        self._launch_idle_actors()
        while self.counters.env_steps < self.config.total_steps and not self._stop and not self._stop_requested():
            for future in self.runtime.wait(self._in_flight(), num_returns=1):
                if future in self.collects:
                    self._insert(future)  # collect -> insert, and the actor collects again
                elif future is self.evaluations.future:
                    self._finish_evaluation()
                else:
                    self.learning.finish(future)  # an update's metrics (its priorities went back already)
            self.learning.issue()  # sample -> update -> priorities back -> publish weights
            self._harvest_background()
            self.counters.wall_s = time.perf_counter() - started
            self._when_due()  # log line, evaluation, checkpoint, a tuner's report
            if self.callbacks is not None and self.callbacks.stop_requested:
                self._stop = True
        if self._stop_requested() and self.checkpoints.snapshots:
            return self._stop_with_snapshot()
        return self._finish()

    def _in_flight(self) -> list[Any]:
        evaluation = self.evaluations.future
        return [*self.collects, *self.learning.in_flight, *([evaluation] if evaluation is not None else [])]

    def _when_due(self) -> None:
        counters, config, due = self.counters, self.config, self.due
        if counters.env_steps >= due["log"]:
            due["log"] = next_multiple(counters.env_steps, config.logging.every_steps)
            self._log_training()
        if counters.env_steps >= due["eval"] and not self.evaluations.in_flight:
            due["eval"] = next_multiple(counters.env_steps, config.evaluation.every_steps)
            self.evaluations.start(self.learning.weights)
        if counters.env_steps >= due["checkpoint"]:
            due["checkpoint"] = next_multiple(counters.env_steps, config.checkpoint.every_steps)
            self.save("latest")
        if self.reporting is not None and counters.env_steps >= self._report_due:
            self._report_due = next_multiple(counters.env_steps, self.reporting.every)
            self._report()

    def _stop_requested(self) -> bool:
        return self.stop_signals is not None and self.stop_signals.requested is not None

    def _finish(self) -> Counters:
        """The run ended: let every call finish, evaluate where the run stands, log, checkpoint."""
        counters = self.counters
        self._drain()
        if self.evaluations.in_flight and not self._stop_requested():
            self._finish_evaluation()
        if not self._stop and not self._stop_requested() and self.evaluations.mark[0] != counters.env_steps:
            self.evaluations.start(self.learning.weights)
            self._finish_evaluation()
        if self.telemetry.log_mark[0] != counters.env_steps:
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
        if self.evaluations.in_flight:
            self._finish_evaluation()
        if self.evaluations.mark[0] != self.counters.env_steps:
            self.due["eval"] = next_multiple(self.counters.env_steps, self.config.evaluation.every_steps)
            self.evaluations.start(self.learning.weights)
            self._finish_evaluation()
        self.save("latest")
        self.checkpoints.writer.wait()
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
        if self.telemetry.log_mark[0] != self.counters.env_steps:
            self._log_training()
        self._close()
        return self.counters

    def _close(self) -> None:
        """Finish the checkpoint being written, then close the logs."""
        try:
            self.checkpoints.writer.close()
        finally:
            self.progress.close()
            self.metrics.close()

    # -- collect and insert ---------------------------------------------------------------
    def _launch_idle_actors(self) -> None:
        """Start a collect on every actor without one (a restored run has some in flight)."""
        pending = {index for index, _ in self.collects.values()}
        for index in range(len(self.actors)):
            if index not in pending:
                self._launch_collect(index)

    def _launch_collect(self, index: int) -> None:
        """Relaunch actor `index` unless it is lost; it pulls the latest weights every
        `weight_refresh_steps` collects."""
        actor = self.supervisor.live(self.actors)[index]
        if actor is None:
            return
        if self.collects_launched[index] % self.config.placement.weight_refresh_steps == 0:
            self._fire(actor, "set_weights", self.learning.weights)
        self.collects_launched[index] += 1
        *batches, steps = self.runtime.call(
            actor, "collect", self.config.placement.actor_steps_per_call, num_returns=len(self.shards) + 1
        )
        self.collects[steps] = (index, batches)

    def _insert(self, steps_future: Any) -> None:
        """Hand a finished batch to the shards (as a future) and relaunch its actor, once the
        rate limiter lets it."""
        index, batches = self.collects.pop(steps_future)
        try:
            steps = self.runtime.get(steps_future)  # small; raises if the actor died
            for shard, batch in zip(self.shards, batches, strict=True):
                self._fire(shard, "add", batch)
            self.counters.env_steps += steps
            self.progress.advance(steps)
        except RoleFailed:
            self.supervisor.reconcile()
        self.learning.wait_for_room()
        self._launch_collect(index)

    # -- calls in flight, and roles that died --------------------------------------------------
    def _drain(self) -> None:
        """Let every call in flight finish."""
        self.learning.finish_all()
        for future in self.collects:
            try:
                self.runtime.get(future)
            except RoleFailed:
                self.supervisor.reconcile()
        self.collects.clear()
        while self._background:
            self.runtime.wait(self._background, num_returns=len(self._background))
            self._harvest_background()

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
                self.supervisor.reconcile()
            except LearnerGroupBroken:
                pass  # priorities of an update the broken group never made

    def _restarted(self, name: str) -> None:
        """Role `name` came back after dying: a shard comes back empty (its loss is counted), an
        actor continues the epsilon schedule from the run's progress."""
        kind, _, index = name.partition("-")
        if kind == "shard":
            self.counters.replay_lost += self.contents.forget(int(index))
        if kind == "actor":
            self._fire(self.supervisor.handles[name], "set_progress", self._actor_progress())

    # -- evaluation, logs, checkpoints --------------------------------------------------------
    def _finish_evaluation(self) -> None:
        best = self.counters.best_eval_return
        if self.evaluations.finish(self.metrics, self.progress):
            self._stop = True  # stop_return reached
        if self.callbacks is not None and self.counters.best_eval_return != best:
            self.callbacks.checkpoint("best", self.evaluations.mark[0])

    def _log_training(self) -> None:
        self.telemetry.log_training(self.metrics, lambda: sum(self.contents.refresh()))

    def save(self, name: str) -> None:
        """Write checkpoint `name`: the learner's state and, with replay snapshots, every role's,
        all taken at this one point of the loop, then written on the checkpoint thread while
        training goes on. A role that died meanwhile skips this checkpoint (the last one stays)."""
        try:
            resume = snapshot.take(self) if self.checkpoints.snapshots else None
            parts = [self.runtime.get(future) for future in self.learning.call_replica("state_dict")]
        except RoleFailed:
            self.supervisor.reconcile()
            return
        self.checkpoints.submit(name, parts, self.counters, resume)
        if self.callbacks is not None:
            self.callbacks.checkpoint(name, self.counters.env_steps)

    def _role_lost(self, name: str, reason: str) -> RoleLost:
        """Stop the run: role `name`, which it cannot go on without, cannot come back."""
        run = self.store.uri if self.store is not None else self.run_dir
        return RoleLost(
            f"{name} cannot come back ({reason}) at env step {self.counters.env_steps}; "
            f"{self.checkpoints.kept()}: continue with `distdqn train --resume {run}` once the cluster can hold it"
        )

    def _diverged(self, what: str) -> TrainingDiverged:
        return self.checkpoints.diverged(what, self.counters.env_steps)

    def disk_full(self, error: OSError) -> DiskFull:
        return self.checkpoints.disk_full(error, self.counters.env_steps)
