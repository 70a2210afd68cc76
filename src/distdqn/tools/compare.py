"""The table of `distdqn compare`: where each run ended, its best, how fast it ran, and when it
first reached a return (the time-to-solve of benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distdqn.errors import UserError
from distdqn.tools.runs import Run, expand_tune_dirs, load_run, readable

FIELDS = (
    "run",
    "final_eval_return",
    "best_eval_return",
    "env_steps_to_threshold",
    "wall_s_to_threshold",
    "env_steps_per_s",
    "env_steps",
)


def summarize(run: Run, threshold: float | None) -> dict[str, Any]:
    """One row; a value the run does not have (no evaluation yet, threshold never reached or
    not asked for) is None."""
    returns = [e.return_mean for e in run.evaluations]
    reached = next((e for e in run.evaluations if threshold is not None and e.return_mean >= threshold), None)
    return {
        "run": run.name,
        "final_eval_return": returns[-1] if returns else None,
        "best_eval_return": max(returns) if returns else None,
        "env_steps_to_threshold": None if reached is None else reached.env_steps,
        "wall_s_to_threshold": None if reached is None else reached.wall_s,
        "env_steps_per_s": round(run.env_steps / run.wall_s, 1) if run.wall_s > 0 else None,
        "env_steps": run.env_steps,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]], threshold: float | None) -> str:
    """Plain text, columns aligned (run names left, numbers right), blank where a row has None."""
    target = "threshold" if threshold is None else f"{threshold:g}"
    headers = [
        "run",
        "final return",
        "best return",
        f"env steps to {target}",
        f"seconds to {target}",
        "env steps/s",
        "env steps",
    ]
    cells = [[_cell(row[field]) for field in FIELDS] for row in rows]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(headers)]
    return "\n".join(_line(line, widths) for line in [headers, *cells])


def _line(texts: list[str], widths: list[int]) -> str:
    cells = [texts[0].ljust(widths[0])] + [text.rjust(width) for text, width in zip(texts[1:], widths[1:], strict=True)]
    return "  ".join(cells).rstrip()


def compare(locations: Sequence[Path | str], threshold: float | None, as_json: bool) -> str:
    """The output of `distdqn compare` for run or tune directories (paths or URIs): a table, or
    one JSON array of rows (FIELDS)."""
    if threshold is not None and not math.isfinite(threshold):
        raise UserError(f"--threshold must be a finite number, got {threshold}")
    with readable(locations) as dirs:
        rows = [summarize(load_run(run.path, run.name), threshold) for run in expand_tune_dirs(dirs)]
    return json.dumps(rows) if as_json else table(rows, threshold)
