"""What a change of config means for a run that goes on.

`train --resume DIR --set ...` and a PBT exploit both continue a run (weights, optimizer, replay,
counters) under a config that differs from the one its checkpoint was written under. A change
takes effect from that point; nothing is applied to the history before it:
- the rate limiter owes `replay_ratio` updates per env step from the point of change on, and
  PER's beta anneals from its value there to `beta_end` at the new `total_steps` (see
  `Schedule`); the learning rate schedule is a function of env steps, and a new `lr` scales it
  whole (`follow_lr`);
- a change of any `env.*` field reaches the actors: they start new episodes there, as after an
  actor restart, and the evaluator is built from the new config as always;
- what the stored replay means is recomputed where it can be (priority masses under a new
  `alpha` or `priority_eps`, from the priorities they encode; bootstrap discounts under a new
  `gamma`, from the stored step counts, where one-step returns make that exact); where it cannot
  (`n_step`, the replay's shape, `gamma` with n-step returns folded under the old one), the replay
  starts empty and the run says so in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from distdqn.config import Config, override_config

REPLAY_LAYOUT = (
    "env.id",
    "env.num_envs",
    "env.frame_stack",
    "placement.num_actors",
    "placement.num_shards",
    "replay.capacity",
    "algorithm.n_step",
)
"""Fields the shape of the stored replay and of the roles' states depends on."""


def flat_fields(config: Config) -> dict[str, Any]:
    """Every field of `config` by its dotted path (`algorithm.lr`); dicts (env kwargs, resources) whole."""
    flat: dict[str, Any] = {}
    for name, value in config.model_dump().items():
        if isinstance(getattr(config, name), BaseModel):
            flat.update({f"{name}.{key}": inner for key, inner in value.items()})
        else:
            flat[name] = value
    return flat


def changed_fields(before: Config, after: Config) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ, each with (before, after)."""
    old, new = flat_fields(before), flat_fields(after)
    keys = sorted(old.keys() | new.keys())
    return {key: (old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)}


def replay_discarded_by(before: Config, after: Config) -> list[str]:
    """The changes that leave the stored replay meaningless under `after`: a new shape, or n-step
    returns folded under another discount. Empty when the replay can be kept."""
    changed = changed_fields(before, after)
    fields = [key for key in REPLAY_LAYOUT if key in changed]
    if "algorithm.gamma" in changed and before.algorithm.n_step > 1:
        fields.append("algorithm.gamma")
    return fields


def describe(changes: dict[str, tuple[Any, Any]], fields: list[str]) -> str:
    """`a.b 1 -> 2, c.d x -> y`, for one-line messages."""
    return ", ".join(f"{key} {changes[key][0]!r} -> {changes[key][1]!r}" for key in fields)


def actors_restart_episodes(before: Config, after: Config) -> bool:
    """Whether actors must begin new episodes rather than continue the saved ones: the envs they
    would continue were made under other `env.*` settings, or their partial n-step sums were
    folded under another `gamma`."""
    changed = changed_fields(before, after)
    return any(key.startswith("env.") for key in changed) or "algorithm.gamma" in changed


def follow_lr(before: Config, after: Config) -> Config:
    """A new `lr` scales the whole learning-rate schedule: with `lr_end` set and left as it was,
    `lr_end` moves by the same factor, so that x1.2 on `lr` (a PBT perturbation, a `--set` on
    resume) is x1.2 at every step of the decay, not x1.0 by its end. Set `lr_end` too to choose it."""
    old, new = before.algorithm, after.algorithm
    if old.lr_end is None or new.lr == old.lr or new.lr_end != old.lr_end:
        return after
    scaled = old.lr_end * new.lr / old.lr
    return override_config(after, [f"algorithm.lr_end={scaled!r}"], origin="lr_end scaled with lr")


@dataclass(frozen=True)
class Schedule:
    """A linear schedule re-based at the last point of change: from `value` at env step `origin`
    to `end` at env step `horizon`, then held. A fresh run's is (0, start, end, total_steps), so
    a change of `total_steps` or of the end value continues from where the schedule stood instead
    of jumping back (PER's beta at 1.0 stays at 1.0 when the run is extended)."""

    origin: int
    value: float
    end: float
    horizon: int

    def at(self, env_steps: int) -> float:
        if env_steps >= self.horizon:
            return self.end
        return self.value + (self.end - self.value) * max(env_steps - self.origin, 0) / (self.horizon - self.origin)

    def rebased(self, env_steps: int, end: float, horizon: int) -> Schedule:
        """The same schedule continued from `env_steps` towards a new `end` at a new `horizon`."""
        if (end, horizon) == (self.end, self.horizon):
            return self
        return Schedule(env_steps, self.at(env_steps), end, max(horizon, env_steps))


def beta_schedule(config: Config, saved: list[float] | None = None) -> Schedule:
    """PER's beta for `config`: `saved` is a checkpoint's (origin, value, end, horizon), or None
    for a run that starts (beta_start at step 0 to beta_end at total_steps)."""
    if saved is None:
        return Schedule(0, config.replay.beta_start, config.replay.beta_end, config.total_steps)
    origin, value, end, horizon = saved
    return Schedule(int(origin), float(value), float(end), int(horizon))


@dataclass(frozen=True)
class Continued:
    """The checkpoint a run continues from: the config it was written under, and whether it is
    another run's (a PBT donor's), whose random streams the run must not replay."""

    config: Config
    adopted: bool = False
