"""Where numbers go: metrics.jsonl (the contract), TensorBoard, and progress on stderr."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from tqdm import tqdm

from distdqn.config import ProgressMode
from distdqn.extras import installed, missing_extra
from distdqn.storage.run_files import make_directory, open_append, refuse_links_inside

TIMING_KEYS = ("wall_s", "env_steps_per_s", "updates_per_s")


def tensorboard_enabled(setting: bool | Literal["auto"]) -> bool:
    """`logging.tensorboard` on this machine: `auto` is whether TensorBoard is installed (an
    extra, so that the plain install stays light); `true` without it is one line naming the extra."""
    if isinstance(setting, str):
        return installed("tensorboard")
    if setting and not installed("tensorboard"):
        raise missing_extra("tensorboard", "logging.tensorboard = true")
    return setting


class MetricsSink(Protocol):
    """Somewhere the records of metrics.jsonl also go (TensorBoard, Weights & Biases, an API
    user's callback), each record once, after it is on disk."""

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, int | float]:
    """A record's numbers as the dashboards name them: `eval/...` for evaluation (`eval_return_mean`
    is `eval/return_mean`), `train/...` for the rest; `env_steps`, their x axis, and anything
    that is not a number (None, a string, a bool) are left out."""
    return {
        f"eval/{key.removeprefix('eval_')}" if key.startswith("eval_") else f"train/{key}": value
        for key, value in record.items()
        if key != "env_steps" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class TensorBoardSink:
    """Numeric fields as TensorBoard scalars: `eval/...` for evaluation, `train/...` for the
    rest, all plotted against env steps. TensorBoard picks new file names in `tb/`, which must
    hold no links (see distdqn.storage.run_files)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        tb = run_dir / "tb"
        refuse_links_inside(tb)
        make_directory(tb)
        self._writer = SummaryWriter(log_dir=str(tb))

    def write(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, record["env_steps"])

    def close(self) -> None:
        self._writer.close()


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (never through a link: see
    distdqn.storage.run_files) and hands each record on to the `sinks`."""

    def __init__(self, run_dir: Path, sinks: Sequence[MetricsSink] = ()) -> None:
        self._file = open_append(run_dir / "metrics.jsonl")
        self.sinks = list(sinks)

    def write(self, record: dict[str, Any]) -> None:
        """One line of strict JSON: a non-finite number (which json.dumps would write as a bare
        NaN, which is not JSON) is written as null."""
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        self._file.write((json.dumps(record, allow_nan=False) + "\n").encode())
        self._file.flush()
        for sink in self.sinks:
            sink.write(record)

    @property
    def position(self) -> int:
        """Bytes in metrics.jsonl so far: where a resume from a checkpoint taken now cuts it."""
        return self._file.tell()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            for sink in self.sinks:
                sink.close()


class Progress:
    """Training progress on stderr, in the form that suits where it is shown.

    `live` redraws one tqdm line, for a terminal. `lines` writes a complete plain line every
    `interval_s` seconds and one more at close, for a pipe, a file or a CI log, which would keep
    every carriage-return redraw on one ever-growing line. `auto` picks live when the stream is a
    terminal, else lines; `none` writes nothing. The clock is injectable so that tests need not
    sleep.
    """

    def __init__(
        self,
        total_steps: int,
        initial_steps: int,
        mode: ProgressMode,
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        if mode == "auto":
            mode = "live" if self._stream.isatty() else "lines"
        self._lines = mode == "lines"
        self._total = total_steps
        self._steps = initial_steps
        self._eval: float | None = None
        self._interval_s = interval_s
        self._clock = clock
        self._start = self._mark = (clock(), initial_steps)  # (time, steps) at start and at the last line
        self._bar = None
        if mode == "live":
            self._bar = tqdm(
                total=total_steps,
                initial=initial_steps,
                unit="step",
                unit_scale=True,
                mininterval=0.5,
                file=self._stream,
                bar_format="{n_fmt}/{total_fmt} steps {rate_fmt}{postfix} ETA {remaining}",
            )

    def advance(self, steps: int) -> None:
        self._steps += steps
        if self._bar is not None:
            self._bar.update(steps)
        elif self._lines and self._clock() - self._mark[0] >= self._interval_s:
            self._write_line(final=False)

    def show_eval(self, mean_return: float) -> None:
        self._eval = mean_return
        if self._bar is not None:
            self._bar.set_postfix_str(f"eval {mean_return:.1f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._lines:
            self._write_line(final=True)

    def _write_line(self, final: bool) -> None:
        """Steps/s over the time since the last line (the current speed, which the ETA uses), or
        over the whole run in the final line, which gives the elapsed time instead of an ETA."""
        now = self._clock()
        since_time, since_steps = self._start if final else self._mark
        percent = min(100, self._steps * 100 // self._total)
        parts = [f"env steps {self._steps:,}/{self._total:,} ({percent}%)"]
        rate = (self._steps - since_steps) / (now - since_time) if now > since_time else None
        if rate is not None:
            parts.append(f"{rate:,.0f} steps/s")
        if self._eval is not None:
            parts.append(f"eval return {self._eval:.1f}")
        if final:
            parts.append(f"elapsed {_duration(now - self._start[0])}")
        elif rate:
            parts.append(f"ETA {_duration(max(0, self._total - self._steps) / rate)}")
        self._stream.write(" | ".join(parts) + "\n")
        self._stream.flush()
        self._mark = (now, self._steps)


def _duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
