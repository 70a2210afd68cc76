"""Shared fixtures: a tiny deterministic env whose transitions can be checked exactly, and a
module's embedded Ray cluster for Tune runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest

from distdqn import memory

COUNTER_ID = "distdqn_tests/Counter-v0"


class CounterEnv(gym.Env):
    """Observation = steps taken in this episode; the step from observation t pays
    (t + 1) * reward_scale; terminates after
    `length` steps. With a TimeLimit shorter than `length`, episodes are truncated instead."""

    def __init__(self, length: int = 5, reward_scale: float = 1.0) -> None:
        self.length = length
        self.reward_scale = reward_scale
        self.observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self._t += 1
        return np.array([self._t], np.float32), self.reward_scale * self._t, self._t >= self.length, False, {}


class FrameCounterEnv(gym.Env):
    """Pixels that say which step they are: every frame is filled with the step's number within
    the episode (uint8). Rewards are 5 for even steps and -3 for odd ones; the episode
    terminates after `length` steps; `lives` drop by one every `life_every` steps."""

    def __init__(self, length: int = 7, life_every: int = 3) -> None:
        self.length = length
        self.life_every = life_every
        self.observation_space = gym.spaces.Box(0, 255, (3, 2), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def _frame(self) -> np.ndarray:
        return np.full((3, 2), self._t, np.uint8)

    def _info(self) -> dict:
        return {"lives": 10 - self._t // self.life_every}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), self._info()

    def step(self, action):
        reward = 5.0 if self._t % 2 == 0 else -3.0
        self._t += 1
        return self._frame(), reward, self._t >= self.length, False, self._info()


FRAMES_ID = "distdqn_tests/FrameCounter-v0"

if COUNTER_ID not in gym.registry:
    gym.register(COUNTER_ID, entry_point=CounterEnv)
    gym.register(FRAMES_ID, entry_point=FrameCounterEnv)


@pytest.fixture
def counter_id() -> str:
    return COUNTER_ID


@pytest.fixture
def frames_id() -> str:
    return FRAMES_ID


@pytest.fixture
def eight_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has 8 GiB of memory, so that a message saying what it has reads the same on
    every machine the tests run on."""
    monkeypatch.setattr(memory, "machine_memory", lambda: 8 * memory.GiB)


@pytest.fixture(scope="module")
def embedded_ray() -> Iterator[None]:
    """One embedded 2-CPU cluster for every Tune run of a module, started as `distdqn tune
    --cpus 2` starts its own; `tune` keeps a connection it finds and leaves it open, so each run
    does not start and stop a cluster of its own (seconds each).

    A run that needs the whole cluster for one trial gets a module of its own: Ray 2.60 was seen
    to leak a CPU for good when Tune removed a placement group as its reused trial actor was being
    killed (the raylet reported 1 of 2 CPUs free with no worker left), after which such a trial
    waited forever (CONTRIBUTING.md)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # as `tune` sets them before Ray starts
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from distdqn.runtime.ray import RayConnection

    connection = RayConnection(None, 2)
    try:
        yield
    finally:
        connection.close()
