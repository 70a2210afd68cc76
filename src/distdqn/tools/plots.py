"""Figures for `distdqn plot`: learning curves of runs or of groups of runs, and a tune
directory's trials with their hyperparameters over time.

Only that command imports this module (matplotlib is slow to import). Figures are made without
pyplot, on the Agg canvas: no GUI backend, and no global figure registry to leak into.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from distdqn.config import short_repr
from distdqn.errors import UserError
from distdqn.storage.object_store import is_remote
from distdqn.tools.runs import Run, RunDir, TuneReport, align, config_values, is_tune_dir, load_run, load_tune, readable

FORMATS = ("png", "svg", "pdf")
DPI = 100
BOOTSTRAP_SAMPLES = 2000
X_LABELS = {"env_steps": "env steps", "wall_s": "wall-clock seconds"}
BANDS = {"ci95": "95% bootstrap CI of the mean", "minmax": "min to max over runs"}
EVAL_LABEL = "eval return (greedy)"


@dataclass(frozen=True)
class Group:
    """Runs drawn as one curve: their mean, with a band when there are several."""

    label: str
    runs: list[Run]


def output_format(out: Path) -> str:
    """The file type `out` asks for, checked before any work so that a typo costs nothing."""
    fmt = out.suffix.lower().removeprefix(".")
    if fmt not in FORMATS:
        raise UserError(f"--out {out}: unsupported file type {out.suffix or '(none)'!r}; use .png, .svg or .pdf")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory")
    if not out.parent.exists():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: {out.parent} is not a directory")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: directory {out.parent} is not writable")
    return fmt


def _format(value: Any) -> str:
    """A config or hyperparameter value for a label: as TOML/JSON spell it (true, [64, 64]),
    strings bare, floats to 6 digits (a PBT-perturbed 1.2 * 1e-3 is 0.0012, not 0.0012000000000000001)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers by value (so 1e-4 comes before 3e-4), then anything else by its text."""
    return (0, float(value), "") if _is_number(value) else (1, 0.0, _format(value))


def _glob_names(run: Run) -> tuple[str, str]:
    """What `--group NAME=GLOB` matches: the run directory as given (a URI as typed, a path
    normalized: `./runs/a/` is `runs/a`) and its last part."""
    given = run.name.rstrip("/") if is_remote(run.name) else Path(run.name).as_posix()
    return given, given.rsplit("/", 1)[-1]


def glob_groups(runs: list[Run], specs: list[str]) -> list[Group]:
    """`--group NAME=GLOB`: the runs whose directory, as given or by name, matches GLOB
    (fnmatch: `*` also matches `/`). Groups may overlap (an `all=*` beside a subset); a run in no
    group, or a group with no run, is a mistake in the command."""
    groups: list[Group] = []
    grouped: set[int] = set()
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name.strip() or not pattern:
            raise UserError(f"--group must be NAME=GLOB, got {short_repr(spec)}")
        if any(group.label == name for group in groups):
            raise UserError(f"--group {short_repr(name)} is given twice")
        members = [
            i for i, run in enumerate(runs) if any(fnmatch.fnmatchcase(name, pattern) for name in _glob_names(run))
        ]
        if not members:
            raise UserError(f"--group {short_repr(spec)} matches none of the run directories")
        groups.append(Group(name, [runs[i] for i in members]))
        grouped.update(members)
    for i, run in enumerate(runs):
        if i not in grouped:
            raise UserError(f"run directory {run.name} matches no --group")
    return groups


def config_groups(runs: list[Run], keys: list[str]) -> list[Group]:
    """`--group-by KEY`: one group per distinct value of the config fields (e.g. the seeds of
    each learning rate), ordered by value."""
    columns = [config_values(runs, key) for key in keys]
    by_value: dict[str, tuple[list[Any], list[Run]]] = {}
    for run, values in zip(runs, zip(*columns, strict=True), strict=True):
        by_value.setdefault(json.dumps(values), (list(values), []))[1].append(run)
    ordered = sorted(by_value.values(), key=lambda item: [_order(value) for value in item[0]])
    return [
        Group(", ".join(f"{key}={_format(value)}" for key, value in zip(keys, values, strict=True)), members)
        for values, members in ordered
    ]


def _labels(runs: list[Run]) -> list[str]:
    """Run directory names, or the paths as given where two runs share a name (seed dirs
    under different parents)."""
    names = [RunDir(run.name, run.path).basename for run in runs]
    return names if len(set(names)) == len(names) else [run.name for run in runs]


def _evaluated(groups: list[Group]) -> list[Group]:
    """The groups without runs that have no evaluation yet, so that `plot runs/*` works while a
    run is starting: those are named on stderr and left out, as is a group left empty."""
    for run in {id(run): run for group in groups for run in group.runs if not run.evaluations}.values():
        print(f"distdqn: warning: {run.name} has no evaluation yet; left out of the plot", file=sys.stderr)
    kept = [Group(g.label, [run for run in g.runs if run.evaluations]) for g in groups]
    kept = [group for group in kept if group.runs]
    if not kept:
        raise UserError("nothing to plot: no run has an evaluation in its metrics.jsonl yet")
    return kept


def _colors(count: int) -> list[Any]:
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["viridis"](i / (count - 1)) for i in range(count)]


def _ci95(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap 95% interval of the mean over runs (rows), at each grid point; the
    resampling is seeded, so one set of runs always gives the same figure."""
    runs = values.shape[0]
    counts = np.random.default_rng(0).multinomial(runs, np.full(runs, 1 / runs), size=BOOTSTRAP_SAMPLES)
    means = counts @ values / runs
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return low, high


def runs_figure(groups: list[Group], x: str, band: str, title: str | None, grouped: bool) -> Figure:
    """One curve per group: the mean of its runs' eval returns on a common x grid (see
    `distdqn.tools.runs.align`), shaded by `band` where the group has several runs."""
    fig = Figure(figsize=(8, 5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for group, color in zip(groups, _colors(len(groups)), strict=True):
        grid, values = align([run.curve(x) for run in group.runs])
        if not grid.size:
            raise UserError(f"group {group.label}: its runs share no range of {x} (one ends before another starts)")
        label = f"{group.label} (n={len(group.runs)})" if grouped else group.label
        ax.plot(grid, values.mean(axis=0), color=color, label=label, marker="o" if grid.size == 1 else None)
        if len(group.runs) > 1:
            low, high = _ci95(values) if band == "ci95" else (values.min(axis=0), values.max(axis=0))
            ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(EVAL_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(title=f"mean; shaded: {BANDS[band]}" if grouped else None, fontsize="small", title_fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def _categories(values: list[Any]) -> list[str] | None:
    """None when a hyperparameter's values are all numbers; else the labels of a categorical
    axis (a PBT over `algorithm.loss`, say)."""
    present = [value for value in values if value is not None]
    return None if all(_is_number(value) for value in present) else sorted({_format(v) for v in present})


def _mark_exploits(ax: Axes, xs: np.ndarray, ys: np.ndarray, color: Any, label: str | None) -> None:
    if xs.size:
        ax.plot(xs, ys, "v", markersize=8, markeredgecolor="black", color=color, gid="exploit", label=label)


def tune_figure(reports: list[TuneReport], x: str, title: str | None) -> Figure:
    """Top: each trial's eval return. Below: one panel per hyperparameter, each trial's value as
    a step plot (the value of a report held since the trial's previous report). A PBT exploit
    is marked where it happened, at the trial's last report before it took the donor's weights
    and hyperparameters, and the donor is named on the returns panel."""
    trials = sorted({r.trial for r in reports})
    names = list(dict.fromkeys(name for r in reports for name in r.params))
    categories = {name: _categories([r.params.get(name) for r in reports]) for name in names}
    columns = max(len(names), 1)
    fig = Figure(figsize=(max(8.0, 4.0 * columns), 8.0 if names else 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 if names else 1, columns)
    top = fig.add_subplot(grid[0, :])
    panels = [fig.add_subplot(grid[1, i], sharex=top) for i in range(len(names))]
    exploit_label: str | None = "PBT exploit (donor named)"
    for trial, color in zip(trials, _colors(len(trials)), strict=True):
        own = [r for r in reports if r.trial == trial]
        xs = np.array([getattr(r, x) for r in own], dtype=float)
        returns = np.array([np.nan if r.eval_return is None else r.eval_return for r in own])
        donors = {i: r.restored_from for i, r in enumerate(own) if r.restored_from is not None}
        exploited, before = list(donors), [max(i - 1, 0) for i in donors]
        top.plot(xs, returns, color=color, label=trial)
        _mark_exploits(top, xs[before], returns[before], color, exploit_label)
        if donors:
            exploit_label = None  # one legend entry for all exploits
        for j, donor in zip(before, donors.values(), strict=True):
            top.annotate(donor, (xs[j], returns[j]), xytext=(4, 4), textcoords="offset points")
        for ax, name in zip(panels, names, strict=True):
            labels = categories[name]
            values = [r.params.get(name) for r in own]
            ys = np.array(
                [np.nan if v is None else float(v) if labels is None else labels.index(_format(v)) for v in values]
            )
            ax.step(xs, ys, where="pre", color=color)
            _mark_exploits(ax, xs[before], ys[exploited], color, None)
    top.set_ylabel(EVAL_LABEL)
    top.set_xlabel(X_LABELS[x])
    top.grid(alpha=0.3)
    top.legend(fontsize="small", ncols=1 + len(trials) // 12)
    for ax, name in zip(panels, names, strict=True):
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(X_LABELS[x])
        ax.grid(alpha=0.3)
        labels = categories[name]
        numbers = [r.params[name] for r in reports if labels is None and r.params.get(name) is not None]
        if labels is not None:
            ax.set_yticks(range(len(labels)), labels)
        elif numbers and min(numbers) > 0 and max(numbers) >= 10 * min(numbers):
            ax.set_yscale("log")  # learning rates and the like are searched over orders of magnitude
        elif all(isinstance(number, int) for number in numbers):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # n_step 3, not 2.75
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Figure, out: Path, fmt: str) -> None:
    """Write through a temporary file in the same directory and rename it, so that a reader (a
    browser refreshing, a CI upload) never sees half a file."""
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(temporary, format=fmt, dpi=DPI)
        os.replace(temporary, out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write --out {out}: {error.strerror or error}") from None


def plot(
    locations: Sequence[Path | str],
    out: Path,
    x: str = "env_steps",
    groups: list[str] | None = None,
    group_by: list[str] | None = None,
    band: str = "ci95",
    title: str | None = None,
) -> Figure:
    """Draw what `distdqn plot` asks for of run or tune directories (paths or URIs), write it
    to `out`, and return the figure."""
    fmt = output_format(out)
    if groups and group_by:
        raise UserError("--group and --group-by cannot be combined")
    with readable(locations) as dirs:
        fig = _figure(dirs, x, groups, group_by, band, title)
    save(fig, out, fmt)
    return fig


def _figure(
    dirs: list[RunDir], x: str, groups: list[str] | None, group_by: list[str] | None, band: str, title: str | None
) -> Figure:
    tune_dirs = [run for run in dirs if is_tune_dir(run.path)]
    if tune_dirs:
        if len(dirs) > 1 or groups or group_by:
            raise UserError(
                f"tune directory {tune_dirs[0].name} is plotted on its own, without --group or --group-by "
                f"(plot {tune_dirs[0].child('trials').name}/* to treat its trials as runs)"
            )
        fig = tune_figure(load_tune(tune_dirs[0]), x, title or tune_dirs[0].basename)
    else:
        runs = [load_run(run.path, run.name) for run in dirs]
        if groups:
            chosen = glob_groups(runs, groups)
        elif group_by:
            chosen = config_groups(runs, group_by)
        else:
            chosen = [Group(label, [run]) for label, run in zip(_labels(runs), runs, strict=True)]
        fig = runs_figure(_evaluated(chosen), x, band, title, grouped=bool(groups or group_by))
    return fig
