"""A run's checkpoints: `latest` (with every role's state where `checkpoint.replay` stores the
replay) written on its own thread from a cut the loop takes, and what `--resume` would continue
from when a run stops early."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from distdqn.config import Config
from distdqn.errors import CheckpointError, DiskFull, TrainingDiverged
from distdqn.run.counters import Counters
from distdqn.run.snapshot import snapshots_replay
from distdqn.sharded_head import join_head_rows
from distdqn.storage.checkpoint import CheckpointWriter, load_checkpoint, non_finite
from distdqn.storage.object_store import RemoteRun


class Checkpoints:
    def __init__(self, config: Config, run_dir: Path, store: RemoteRun | None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.writer = CheckpointWriter(after_save=None if store is None else store.checkpoint_saved)
        self.snapshots = snapshots_replay(config)
        """Whether `latest` holds every role's state (see distdqn.run.snapshot)."""

    def submit(self, name: str, parts: list[Any], counters: Counters, resume: dict[str, Any] | None) -> None:
        """Write checkpoint `name` from the learners' `state_dict` parts (a split head's shards
        join theirs) and `resume`, the roles' snapshot, on the checkpoint thread."""
        tensors, learner_state = join_head_rows(parts)
        bad = non_finite(tensors)
        if bad:
            raise self.diverged(f"the learner's tensors {bad[:3]} hold NaN or inf", counters.env_steps)
        tensors = {key: value.detach().clone() for key, value in tensors.items()}  # the learner goes on
        state = {"counters": dataclasses.asdict(counters), "learner": learner_state}
        checkpoint = self.config.checkpoint
        self.writer.submit(
            self.run_dir / "checkpoints",
            name,
            self.config,
            tensors,
            state,
            checkpoint.keep,
            resume,
            checkpoint.replay_codec,
        )

    def diverged(self, what: str, env_steps: int) -> TrainingDiverged:
        """Stop the run: nothing non-finite is saved, so `latest` keeps the last finite weights."""
        return TrainingDiverged(f"training diverged at env step {env_steps} ({what}); {self.kept()}")

    def disk_full(self, error: OSError, env_steps: int) -> DiskFull:
        """Stop the run: a checkpoint is linked only once complete, so `latest` is intact."""
        where = error.filename or self.run_dir
        return DiskFull(f"the disk is full (writing {where}) at env step {env_steps}; {self.kept()}")

    def kept(self) -> str:
        """What `--resume` would continue from. A checkpoint being written when the run stopped
        may not have become `latest`: the last one written in full is named."""
        try:
            self.writer.wait()
        except OSError:
            pass  # a write that failed never became `latest`
        latest = self.run_dir / "checkpoints" / "latest"
        try:
            steps = load_checkpoint(latest).state["counters"]["env_steps"]
        except (CheckpointError, KeyError, TypeError):
            return "no checkpoint was written"
        return f"checkpoints/latest keeps env step {steps}"
