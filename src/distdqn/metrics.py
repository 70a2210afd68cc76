"""Where numbers go: metrics.jsonl (the contract), TensorBoard, and a live progress line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

TIMING_KEYS = ("wall_s", "env_steps_per_s", "updates_per_s")


class MetricsLog:
    """Appends one JSON object per line and mirrors numeric fields to TensorBoard.

    TensorBoard tags group fields: `eval/...` for evaluation, `train/...` for the rest, all
    plotted against env steps.
    """

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self._file = (run_dir / "metrics.jsonl").open("a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        """One line of strict JSON: a non-finite number (which json.dumps would write as a bare
        NaN, which is not JSON) is written as null."""
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._writer is None:
            return
        step = record["env_steps"]
        for key, value in record.items():
            if key == "env_steps" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            group = "eval" if key.startswith("eval_") else "train"
            self._writer.add_scalar(f"{group}/{key.removeprefix('eval_')}", value, step)

    @property
    def position(self) -> int:
        """Bytes in metrics.jsonl so far: where a resume from a checkpoint taken now cuts it."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


class Progress:
    """One live line on stderr: steps, steps/s, last evaluation return, ETA."""

    def __init__(self, total_steps: int, initial_steps: int, enabled: bool) -> None:
        self._bar = tqdm(
            total=total_steps,
            initial=initial_steps,
            unit="step",
            unit_scale=True,
            mininterval=0.5,
            disable=not enabled,
            file=sys.stderr,
            bar_format="{n_fmt}/{total_fmt} steps {rate_fmt}{postfix} ETA {remaining}",
        )

    def advance(self, steps: int) -> None:
        self._bar.update(steps)

    def show_eval(self, mean_return: float) -> None:
        self._bar.set_postfix_str(f"eval {mean_return:.1f}", refresh=False)

    def close(self) -> None:
        self._bar.close()
