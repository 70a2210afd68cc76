"""Checks a run makes before it writes anything: the replay fits this machine, the head splits
over its learners, and a checkpoint's counters and tensors fit the run that would load them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from pydantic import TypeAdapter, ValidationError

from distdqn.config import Config
from distdqn.envs import env_spaces, num_actions, policy_space
from distdqn.errors import CheckpointError, UserError
from distdqn.memory import gib, require_memory
from distdqn.networks import build_q_network
from distdqn.replay.buffer import replay_bytes
from distdqn.run.counters import Counters


def check_head_splits(config: Config, action_space: gym.Space) -> None:
    """A head of N actions splits over at most N learners."""
    shards, actions = config.placement.head_shards, num_actions(action_space)
    if shards > actions:
        raise UserError(f"placement.head_shards={shards} splits a head of {actions} actions: at most {actions}")


def check_replay_fits(config: Config, frames: gym.spaces.Box) -> None:
    """Refuse, in one line, a replay larger than this machine's memory, before allocating it (a
    replay.capacity of 10**12 ended in NumPy's allocation traceback). Roles on other Ray nodes
    are not checked here: their memory is theirs."""
    if config.placement.runtime == "ray" and config.placement.address is not None:
        return
    needed = replay_bytes(config.replay.capacity, frames.shape, frames.dtype)
    require_memory(
        needed,
        f"replay.capacity={config.replay.capacity} needs {gib(needed)} of replay memory "
        f"({needed // config.replay.capacity} bytes a transition)",
        UserError,
    )


def check_learner_tensors(directory: Path, tensors: dict[str, torch.Tensor], config: Config) -> None:
    """A checkpoint must fit the network its config builds: every online and target tensor, and
    every Adam moment, with its parameter's shape and dtype (a resume with another network or env
    fails here in one line, not inside a learner)."""
    frame_space, action_space = env_spaces(config.env)
    check_head_splits(config, action_space)
    network = build_q_network(config.network, policy_space(config.env, frame_space), action_space)
    expected = {
        f"{copy}.{name}": value for copy in ("online", "target") for name, value in network.state_dict().items()
    }
    for index, parameter in enumerate(network.parameters()):
        for moment in ("exp_avg", "exp_avg_sq"):
            if f"optimizer.{index}.{moment}" in tensors:
                expected[f"optimizer.{index}.{moment}"] = parameter
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"checkpoint {directory} does not fit the config's network: {missing[0]} is missing")
    for name, like in expected.items():
        if tuple(tensors[name].shape) != tuple(like.shape):
            raise CheckpointError(
                f"checkpoint {directory} does not fit the config's network: {name} has shape "
                f"{list(tensors[name].shape)}, the network needs {list(like.shape)}"
            )
        if tensors[name].dtype != like.dtype:
            raise CheckpointError(
                f"checkpoint {directory} does not fit the config's network: {name} is {tensors[name].dtype}, "
                f"the network's is {like.dtype}"
            )


def saved_counters(directory: Path, state: dict[str, Any]) -> Counters:
    """The counters a checkpoint holds, checked field by field (a hand-edited or foreign
    `state.json` is refused in one line, not met later as a traceback)."""
    learner = state.get("learner")
    if not (
        isinstance(learner, dict)
        and _is_count(learner.get("updates"))
        and isinstance(learner.get("param_groups"), list)
    ):
        raise CheckpointError(f"checkpoint {directory}: state.json has no valid learner section")
    saved = state.get("counters")
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(Counters)}) if isinstance(saved, dict) else []
    if unknown:
        raise CheckpointError(f"checkpoint {directory}: state.json counters has unknown fields {unknown[:3]}")
    try:
        counters = TypeAdapter(Counters).validate_python(saved)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(f"checkpoint {directory}: state.json counters {where}: {first['msg']}") from None
    assert isinstance(saved, dict)  # validated as Counters
    for name, value in _counts(saved):
        if not _is_count(value):
            raise CheckpointError(
                f"checkpoint {directory}: state.json counters {name} must be a whole number >= 0, got {value!r:.40}"
            )
    for name in ("wall_s", "solved_at_wall_s"):
        seconds = getattr(counters, name)
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise CheckpointError(f"checkpoint {directory}: state.json counters {name} must be >= 0, got {seconds}")
    return counters


COUNTS = ("env_steps", "updates", "episodes", "replay_lost", "solved_at_env_steps")
"""The counters that count things: whole numbers, never negative, never a bool or float."""


def _counts(saved: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, value as saved) of every count in a checkpoint's counters, restarts included."""
    counts = [(name, saved[name]) for name in COUNTS if saved.get(name) is not None]
    restarts = saved.get("restarts")
    if isinstance(restarts, dict):
        counts += [(f"restarts.{kind}", count) for kind, count in restarts.items()]
    return counts


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0
