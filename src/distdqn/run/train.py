"""Where a run starts: `train` a fresh run, `resume` one from its latest checkpoint (under the
same config, or a changed one: see distdqn.config_changes), and the loop's execution with its
stop signals and runtime."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from distdqn.config import Config, load_config_toml
from distdqn.config_changes import Continued, changed_fields, describe, follow_lr, replay_discarded_by
from distdqn.devices import check_devices
from distdqn.envs import env_spaces, frame_box, policy_space
from distdqn.envs.custom import specs_for
from distdqn.errors import CheckpointError, ConfigError, UserError
from distdqn.networks import check_q_network
from distdqn.replay.buffer import replay_bytes
from distdqn.run.callbacks import Callback
from distdqn.run.checks import check_head_splits, check_learner_tensors, check_replay_fits, saved_counters
from distdqn.run.counters import Counters, Reporting, TrainResult
from distdqn.run.loop import TrainingRun
from distdqn.run.metrics import tensorboard_enabled
from distdqn.run.run_dir import check_run_files, create_run_dir, prepare_run_dir, remove_own_lock, remove_unstarted_run
from distdqn.run.snapshot import snapshot_layout
from distdqn.run.stopping import StopSignals
from distdqn.run.wandb_sink import require_wandb
from distdqn.runtime import make_runtime
from distdqn.storage.checkpoint import load_checkpoint, load_resume_state, point_link, resume_point
from distdqn.storage.object_store import RemoteRun, download_run, is_remote, remote_run
from distdqn.storage.run_lock import LOCK_FILE, RunLock


def train(
    config: Config,
    run_dir: Path | str,
    store: RemoteRun | None = None,
    reporting: Reporting | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a fresh run in `run_dir` (which must be new or empty; a URI: see distdqn.storage.object_store).
    `callback`: a Python caller's hooks (see distdqn.run.callbacks)."""
    if not str(run_dir).strip():
        raise UserError("--run-dir is empty: name the directory the run goes in")
    # an env that cannot be made fails here, before anything is written
    frame_space, action_space = env_spaces(config.env)
    check_replay_fits(config, frame_box(frame_space))
    check_head_splits(config, action_space)
    check_q_network(config.network, policy_space(config.env, frame_space), action_space)
    _check_machine(config)
    if is_remote(run_dir):
        with remote_run(str(run_dir), resume=False) as remote:
            return dataclasses.replace(train(config, remote.staging, remote, reporting, callback), run_dir=remote.uri)
    run_dir = Path(run_dir)
    created_dir = create_run_dir(run_dir)
    created_lock = not os.path.lexists(run_dir / LOCK_FILE)
    with RunLock(run_dir):  # before anything in the directory is read or written
        try:
            prepare_run_dir(run_dir, config)
        except UserError:
            remove_own_lock(run_dir, created_lock, created_dir)
            raise
        try:
            return _execute(config, run_dir, Counters(), store=store, reporting=reporting, callback=callback)
        except UserError:
            remove_unstarted_run(run_dir, keep=(LOCK_FILE,))
            if not (run_dir / "checkpoints").exists():
                remove_own_lock(run_dir, created_lock, created_dir)
            raise


def _check_machine(config: Config) -> None:
    """This machine can run `config`: it has the learner's devices and the packages its logging needs."""
    check_devices(config)
    require_wandb(config)
    tensorboard_enabled(config.logging.tensorboard)


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
    callback: Callback | None = None,
) -> TrainResult:
    """Continue a run from `run_dir/checkpoints/latest`: counters, weights, optimizer, schedules,
    and, where `latest` holds them (`checkpoint.replay`), the replay and every role's state, so
    that the run goes on exactly as if it had never stopped. Otherwise replay starts empty and
    refills to `learning_starts` before updates resume. Where the `latest` link is broken, the
    run goes on from the newest version that verifies (see `checkpoint.resume_point`); only a
    run that died before finishing its first checkpoint starts over from its config.toml, with
    its metrics begun afresh. A URI is downloaded to a staging directory, which
    the run goes on in, mirrored to the URI (see distdqn.storage.object_store). `adopted`: `latest` came from
    another run (`adopt_checkpoint`), so this run's metrics are cut at its env steps, not at the
    byte offset the other run's file had, and its random streams branch off at the resume point.
    A `config` that differs from `latest`'s takes effect from here (see distdqn.config_changes).
    """
    if is_remote(run_dir):
        with remote_run(str(run_dir), resume=True) as remote:
            resumed = resume(remote.staging, config, remote, reporting, adopted, callback)
            return dataclasses.replace(resumed, run_dir=remote.uri)
    run_dir = Path(run_dir)
    check_run_files(run_dir)
    with RunLock(run_dir):
        checkpoints = run_dir / "checkpoints"
        start = resume_point(checkpoints)
        if start is None and (run_dir / "config.toml").is_file():
            # died before its first checkpoint: start over; a `best` it wrote stands as the bar
            config = config or resumable_config(run_dir)[0]
            _check_machine(config)
            counters = Counters(best_eval_return=_best_so_far(checkpoints / "best", None))
            return _execute(config, run_dir, counters, store=store, reporting=reporting, callback=callback)
        start = start or checkpoints / "latest"
        checkpoint = load_checkpoint(start)
        continued = Continued(checkpoint.config, adopted)
        config = checkpoint.config if config is None else follow_lr(checkpoint.config, config)
        _check_machine(config)
        counters = saved_counters(start, checkpoint.state)
        check_learner_tensors(start, checkpoint.tensors, config)
        counters.best_eval_return = _best_so_far(checkpoints / "best", counters.best_eval_return)
        resume_state = _usable_resume_state(start, config, checkpoint.config, checkpoint.tensors)
        with _latest_naming(start, counters.env_steps):
            return _execute(config, run_dir, counters, resume_state, store, reporting, continued, callback)


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


def _usable_resume_state(
    latest: Path, config: Config, saved: Config, tensors: dict[str, torch.Tensor]
) -> dict[str, Any] | None:
    """`latest`'s roles' states, if it holds them and they fit `config` (a resume whose changes
    from the `saved` config leave the stored replay meaningless starts with an empty replay
    instead, and says so in one line)."""
    # no array of a run this size holds more than its replay and its learner's tensors
    frames = frame_box(env_spaces(saved.env)[0])
    bound = replay_bytes(saved.replay.capacity, frames.shape, frames.dtype) + sum(
        tensor.numel() * tensor.element_size() for tensor in tensors.values()
    )
    state = load_resume_state(latest, bound)
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


def _execute(
    config: Config,
    run_dir: Path,
    counters: Counters,
    resume_state: dict[str, Any] | None = None,
    store: RemoteRun | None = None,
    reporting: Reporting | None = None,
    continued: Continued | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Run the loop; a SIGTERM or SIGINT ends it with `latest` written (see distdqn.run.stopping)."""
    torch.set_num_threads(config.placement.torch_threads)
    with StopSignals() as stop_signals:
        runtime = make_runtime(config.placement, specs_for(config.env.id))
        stop_signals.install()
        try:
            run = TrainingRun(
                config, run_dir, runtime, counters, stop_signals, resume_state, store, reporting, continued, callback
            )
            try:
                return TrainResult(run_dir, run.run(), stop_signals.requested)
            except OSError as error:
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise run.disk_full(error) from None
                raise
        finally:
            runtime.shutdown()
