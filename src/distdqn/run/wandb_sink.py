"""Weights & Biases as one more sink of the metrics log (`logging.wandb`): every record of
metrics.jsonl goes to W&B as it is written, under the names TensorBoard shows, against env steps.

The run directory keeps its W&B run's id in `wandb_id`, so that `--resume` goes on in the same
W&B run (a run on object storage carries the file there and back: see
distdqn.storage.object_store); a run from step 0 starts a new W&B run. wandb is imported only
when a sink is made, so that runs without it, and `distdqn --help`, never pay for its import.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import string
from pathlib import Path
from typing import Any

from distdqn.config import Config, short_repr
from distdqn.errors import CheckpointError, UserError
from distdqn.run.metrics import scalars
from distdqn.storage.object_store import WANDB_ID_FILE
from distdqn.storage.run_files import refuse_unless_file, replace_file

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What `wandb_id` may hold: W&B's own ids are 8 lowercase letters and digits."""


def require_wandb(config: Config) -> None:
    """Refuse, in one line and before anything runs, `logging.wandb` without the wandb package."""
    if config.logging.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError("logging.wandb = true needs the wandb package: pip install 'distdqn[wandb]'")


def _saved_run_id(run_dir: Path) -> str | None:
    path = run_dir / WANDB_ID_FILE
    if refuse_unless_file(path) is None:
        return None
    text = path.read_bytes()[:100].decode(errors="replace").strip()
    if not _RUN_ID.fullmatch(text):
        raise CheckpointError(f"{path} holds {short_repr(text)}, not a W&B run id")
    return text


def _new_run_id() -> str:
    """An id of W&B's own form: 8 lowercase letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbSink:
    """One W&B run for a run directory: `resume` goes on in the one `wandb_id` names (if any),
    else a new one starts and its id replaces `wandb_id`. The W&B run is named `name` (the run
    directory's name) and holds the whole resolved config."""

    def __init__(self, run_dir: Path, config: Config, name: str, resume: bool) -> None:
        require_wandb(config)
        import wandb

        run_id = (_saved_run_id(run_dir) if resume else None) or _new_run_id()
        logging = config.logging
        try:
            self._run = wandb.init(
                project=logging.wandb_project or None,
                entity=logging.wandb_entity,
                group=logging.wandb_group,
                tags=list(logging.wandb_tags),
                name=name,
                id=run_id,
                resume="allow",
                config=config.model_dump(mode="json"),
                # stdout and stderr stay the run's own: W&B would otherwise wrap them to copy the console
                settings=wandb.Settings(console="off"),
            )
        except wandb.Error as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(
                f"cannot start the W&B run ({reason}); `wandb login`, or WANDB_MODE=offline to log locally"
            ) from None
        replace_file(run_dir / WANDB_ID_FILE, run_id.encode())
        self._run.define_metric("env_steps")
        for group in ("train/*", "eval/*"):
            self._run.define_metric(group, step_metric="env_steps")

    def write(self, record: dict[str, Any]) -> None:
        self._run.log({"env_steps": record["env_steps"], **scalars(record)})

    def close(self) -> None:
        self._run.finish()
