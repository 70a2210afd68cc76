"""Reading finished, live or crashed run directories for `distdqn plot` and `distdqn compare`.

A run that is still training or that was killed can end metrics.jsonl in a partial line, so
lines that are not whole records are skipped rather than fatal. A tune directory (`tune.jsonl`
and `trials/<trial-id>/`) stands for its trials. Curves of several runs are put on one x grid
because runs evaluate at slightly different env steps. A run on object storage (a URI such as
`s3://bucket/run`) is read from a temporary copy of the few files these commands read.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from distdqn.config import read_config_file
from distdqn.errors import UserError
from distdqn.storage.object_store import download_run_files, is_remote

X_KEYS = ("env_steps", "wall_s")


@dataclass(frozen=True)
class Evaluation:
    env_steps: int
    wall_s: float
    return_mean: float


@dataclass(frozen=True)
class Run:
    path: Path  # where its files are read: the directory, or a local copy of a run on object storage
    evaluations: tuple[Evaluation, ...]
    env_steps: int  # of the last line: how far the run got
    wall_s: float  # of the last line
    name: str  # as given on the command line (a path or URI), so that messages and tables name what the user typed

    def curve(self, x: str) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation returns against `x` (env_steps or wall_s), sorted by x; of evaluations
        logged twice at one x (a run's last one can be), the later line counts."""
        by_x = {getattr(e, x): e.return_mean for e in self.evaluations}
        xs = sorted(by_x)
        return np.array(xs, dtype=float), np.array([by_x[v] for v in xs], dtype=float)


@dataclass(frozen=True)
class TuneReport:
    """One line of tune.jsonl: a trial's evaluation and the hyperparameters it trained with."""

    trial: str
    env_steps: int
    wall_s: float
    eval_return: float | None
    params: dict[str, Any]
    restored_from: str | None  # the donor, on a trial's first report after PBT exploited it


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a file, one a line; anything else (the partial last line of a crash,
    garbage) is skipped."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class RunDir(NamedTuple):
    """A run or tune directory: its `name` as the user gave it (a path or URI) and the local
    `path` its files are read from (for a URI, a temporary copy)."""

    name: str
    path: Path

    def child(self, *parts: str) -> RunDir:
        return RunDir("/".join([self.name.rstrip("/"), *parts]), self.path.joinpath(*parts))

    @property
    def basename(self) -> str:
        """The directory's own name, for labels and titles (`.` as given is the current directory's)."""
        return self.name.rstrip("/").rsplit("/", 1)[-1] if is_remote(self.name) else self.path.absolute().name


@contextmanager
def readable(locations: Sequence[Path | str]) -> Iterator[list[RunDir]]:
    """Each run or tune directory, local or on object storage, as a `RunDir` to read; the copies of
    remote ones (their metrics.jsonl, config.toml, tune.jsonl and trials) are removed on exit."""
    with tempfile.TemporaryDirectory(prefix="distdqn-runs-") as temporary:
        dirs = []
        for i, location in enumerate(locations):
            if is_remote(location):
                copy = Path(temporary) / str(i)
                download_run_files(str(location), copy)
                dirs.append(RunDir(str(location), copy))
            else:
                dirs.append(RunDir(str(location), Path(location)))
        yield dirs


def load_run(path: Path, name: str | None = None) -> Run:
    """A run directory's evaluations and how far it got, from its metrics.jsonl; `name`: how
    messages and tables name it (default: `path`)."""
    name = str(path) if name is None else name
    if not path.exists():
        raise UserError(f"run directory {name} does not exist")
    if not path.is_dir():
        raise UserError(f"{name} is not a run directory (not a directory)")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{name} has no metrics.jsonl (not a run directory)")
    lines = [r for r in read_jsonl(metrics) if _is_int(r.get("env_steps")) and _is_number(r.get("wall_s"))]
    evaluations = tuple(
        Evaluation(r["env_steps"], float(r["wall_s"]), float(r["eval_return_mean"]))
        for r in lines
        if _is_number(r.get("eval_return_mean"))
    )
    last: dict[str, Any] = lines[-1] if lines else {"env_steps": 0, "wall_s": 0.0}
    return Run(path, evaluations, last["env_steps"], float(last["wall_s"]), name)


def is_tune_dir(path: Path) -> bool:
    return (path / "tune.jsonl").is_file()


def trial_dirs(tune_dir: RunDir) -> list[RunDir]:
    """A tune directory's trials that have logged something (a trial just started has not), by id."""
    trials = tune_dir.path / "trials"
    found = sorted(p.name for p in trials.iterdir() if (p / "metrics.jsonl").is_file()) if trials.is_dir() else []
    if not found:
        raise UserError(f"tune directory {tune_dir.name} has no trial with a metrics.jsonl under trials/")
    return [tune_dir.child("trials", trial) for trial in found]


def expand_tune_dirs(dirs: list[RunDir]) -> list[RunDir]:
    """Run directories, with each tune directory replaced by its trials."""
    return [trial for run in dirs for trial in (trial_dirs(run) if is_tune_dir(run.path) else [run])]


def load_tune(tune_dir: RunDir) -> list[TuneReport]:
    """The reports of tune.jsonl; lines without the fields a report has are skipped (a live tune
    can end the file in a partial line)."""
    reports = []
    for r in read_jsonl(tune_dir.path / "tune.jsonl"):
        eval_return = r.get("eval_return")
        donor = r.get("restored_from")
        if (
            isinstance(r.get("trial"), str)
            and _is_int(r.get("env_steps"))
            and _is_number(r.get("wall_s"))
            and (eval_return is None or _is_number(eval_return))
            and isinstance(r.get("params"), dict)
            and (donor is None or isinstance(donor, str))
        ):
            value = None if eval_return is None else float(eval_return)
            reports.append(TuneReport(r["trial"], r["env_steps"], float(r["wall_s"]), value, r["params"], donor))
    if not reports:
        raise UserError(f"{tune_dir.child('tune.jsonl').name} has no trial reports yet")
    return reports


_MISSING = object()


def config_values(runs: list[Run], key: str) -> list[Any]:
    """Each run's value of config field `key` (e.g. algorithm.lr) from its config.toml. A run's
    config.toml leaves out fields that are None, so a key some runs lack is None for them; one
    that no run has is a typo."""
    values = []
    for run in runs:
        if not (run.path / "config.toml").is_file():
            raise UserError(f"--group-by {key}: {run.name} has no config.toml")
        node: Any = read_config_file(run.path / "config.toml")
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        values.append(node)
    if all(value is _MISSING for value in values):
        raise UserError(f"--group-by {key}: no run's config.toml has {key}")
    return [None if value is _MISSING else value for value in values]


def align(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves on one grid: every x at which any of them was evaluated, within the range all of
    them cover (no extrapolation), each interpolated linearly there. Returns the grid and one
    row of values per curve; the grid is empty when the curves share no range."""
    low = max(xs[0] for xs, _ in curves)
    high = min(xs[-1] for xs, _ in curves)
    grid = np.unique(np.concatenate([xs for xs, _ in curves]))
    grid = grid[(grid >= low) & (grid <= high)]
    return grid, np.array([np.interp(grid, xs, ys) for xs, ys in curves]).reshape(len(curves), len(grid))
