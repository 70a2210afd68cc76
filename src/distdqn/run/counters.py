"""What a run counts and reports: its counters (saved in every checkpoint), a tuner's hook, and
the result a finished run hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Counters:
    """Progress a checkpoint carries so that `--resume` continues where the run stopped."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    wall_s: float = 0.0
    best_eval_return: float | None = None
    last_eval_return: float | None = None
    solved_at_env_steps: int | None = None
    solved_at_wall_s: float | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    replay_lost: int = 0
    beta: list[float] | None = None
    """PER's beta schedule as (origin, value, end, horizon) since the last change of it (see
    `config_changes.Schedule`); None: from beta_start at step 0 to beta_end at total_steps."""


@dataclass(frozen=True)
class Reporting:
    """How a tuner (distdqn.tools.tuning) hears from a run: every `every` env steps, and once at
    the end, the loop evaluates the greedy policy, writes `latest` in full (with the replay, where
    `checkpoint.replay` stores it) and calls `send(counters, latest)`. `send` may end the run by
    raising (Tune stops an exploited trial so)."""

    every: int
    send: Callable[[Counters, Path], None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path | str  # a URI for a run on object storage
    counters: Counters
    stopped_by: str | None = None  # the signal that ended the run early (SIGTERM, SIGINT)


def next_multiple(env_steps: int, every: int) -> int:
    """The first multiple of `every` past `env_steps`: when something periodic is next due."""
    return (env_steps // every + 1) * every
