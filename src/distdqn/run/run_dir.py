"""The run directory: made and claimed for a new run, its files checked before anything is read
or written (nothing is written through a link: see distdqn.storage.run_files), its metrics cut back to
the checkpoint a resume continues from, and left as found when a start is refused."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from distdqn.config import Config, config_to_toml
from distdqn.errors import UserError
from distdqn.run.metrics import MetricsLog, MetricsSink, TensorBoardSink, tensorboard_enabled
from distdqn.run.wandb_sink import WandbSink, require_wandb
from distdqn.storage.object_store import WANDB_ID_FILE
from distdqn.storage.run_files import (
    TEMPORARY_SUFFIX,
    refuse_links_inside,
    refuse_unless_directory,
    refuse_unless_file,
    remove,
    replace_file,
)
from distdqn.storage.run_lock import LOCK_FILE

RUN_FILES = ("config.toml", "metrics.jsonl", "placement.json", WANDB_ID_FILE, LOCK_FILE)
"""The files a run writes at its top level; each is replaced whole through `<name>.tmp`."""
RUN_DIRECTORIES = ("tb", "checkpoints")


def default_run_dir(config: Config) -> Path:
    """runs/ENV-sSEED-TIME: where a run goes when no directory is named."""
    name = config.env.id.replace("/", "_")
    return Path("runs") / f"{name}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_files(run_dir: Path) -> None:
    """A run writes only inside its own directory. In a run directory someone else made, a
    `metrics.jsonl` (or its temporary `metrics.jsonl.tmp`) that is a link would have us write to
    its target, and a `checkpoints` link would have us write (and delete old versions) there; a
    link in `tb/` could stand at the name TensorBoard picks for its next file. So, before
    anything is read or written, such a directory is refused in one line, as is a file where a
    directory belongs or the other way round. Hard links need no check: no file is ever written
    through one (see distdqn.storage.run_files)."""
    refuse_unless_directory(run_dir)
    for name in RUN_FILES:
        refuse_unless_file(run_dir / name)
        refuse_unless_file(run_dir / (name + TEMPORARY_SUFFIX))
    for name in RUN_DIRECTORIES:
        refuse_unless_directory(run_dir / name)
    refuse_links_inside(run_dir / "tb")


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


def remove_own_lock(run_dir: Path, created_lock: bool, created_dir: bool) -> None:
    """Leave a refused run's directory as it was found: the lock file and the directory go only
    if this process made them (and the directory only if nothing else is in it)."""
    if created_lock:
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
    if created_dir and not any(run_dir.iterdir()):
        run_dir.rmdir()


def remove_unstarted_run(run_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what a new run left in the directory it found empty when it stopped before its
    first checkpoint (a refused start, or one that diverged at once), so that the same command
    can run again; a run with checkpoints is never touched. (A run killed before its first
    checkpoint is started over by `resume`, which begins its files afresh.)"""
    if os.path.lexists(run_dir / "checkpoints"):
        return
    for path in run_dir.iterdir():
        if path.name not in keep:
            remove(path)


def truncate_metrics(path: Path, env_steps: int, offset: int | None = None) -> None:
    """Drop lines logged after the checkpoint a run resumes from (a crashed run got further than
    its last checkpoint), so that metrics.jsonl reads as one run: cut at `offset`, the file's
    size when the checkpoint was taken, where known and still there; else drop lines of later
    env steps (and partial lines). Rewritten as a new file renamed over it (see
    distdqn.storage.run_files), never through a link."""
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


def open_run_files(
    run_dir: Path,
    config: Config,
    from_start: bool,
    env_steps: int,
    metrics_offset: int | None,
    sinks: Sequence[MetricsSink] = (),
    name: str | None = None,
) -> MetricsLog:
    """Write the run's own files, none through a link (see distdqn.storage.run_files). A run from
    step 0 (a new one, or one that died before its first checkpoint and starts over) writes its
    config and begins metrics.jsonl, tb/ and its W&B run afresh, so that they hold one run; a
    resumed run cuts metrics.jsonl back to its checkpoint (at `metrics_offset` where its snapshot
    recorded it) and goes on in the W&B run `wandb_id` names. Records go on to TensorBoard (with
    `logging.tensorboard`), W&B (with `logging.wandb`) and the `sinks` given. `name`: the W&B
    run's name (default the run directory's; a run on object storage passes its URI's last part,
    not its staging directory's)."""
    require_wandb(config)  # before any file changes
    tensorboard = tensorboard_enabled(config.logging.tensorboard)
    if from_start:
        for file in ("metrics.jsonl", "tb", WANDB_ID_FILE):
            remove(run_dir / file)
        replace_file(run_dir / "config.toml", config_to_toml(config).encode())
    else:
        truncate_metrics(run_dir / "metrics.jsonl", env_steps, metrics_offset)
    made: list[MetricsSink] = [TensorBoardSink(run_dir)] if tensorboard else []
    try:
        if config.logging.wandb:
            made.append(WandbSink(run_dir, config, name or run_dir.name, resume=not from_start))
        return MetricsLog(run_dir, [*made, *sinks])
    except BaseException:
        for sink in made:
            sink.close()
        raise
