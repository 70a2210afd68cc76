"""Shared fixtures: a tiny deterministic env whose transitions can be checked exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

COUNTER_ID = "distdqn_tests/Counter-v0"


class CounterEnv(gym.Env):
    """Observation = steps taken in this episode; the step from observation t pays t + 1;
    terminates after
    `length` steps. With a TimeLimit shorter than `length`, episodes are truncated instead."""

    def __init__(self, length: int = 5) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self._t += 1
        return np.array([self._t], np.float32), float(self._t), self._t >= self.length, False, {}


if COUNTER_ID not in gym.registry:
    gym.register(COUNTER_ID, entry_point=CounterEnv)


@pytest.fixture
def counter_id() -> str:
    return COUNTER_ID
