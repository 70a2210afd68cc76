"""An action space of items described by features, for Q-networks that score an action by what it is
rather than by its index (`network.action_features`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class ItemSpace(gym.spaces.Discrete):
    """`Discrete(n)` whose action i is an item described by `features[i]` (float32, one row an item).

    A catalog of 10^4 items gives each item's own Q-output a few samples in a run; a network that
    reads the features learns from every item what it knows of similar ones. Everything that takes
    a Discrete space (sampling, vector envs, the per-action head) takes this one unchanged."""

    def __init__(self, features: Any, seed: int | np.random.Generator | None = None) -> None:
        array = np.array(features, dtype=np.float32)
        if array.ndim != 2 or len(array) == 0 or array.shape[1] == 0:
            raise ValueError(f"item features must be a non-empty 2-D array (items x features), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("item features must be finite")
        array.flags.writeable = False
        super().__init__(len(array), seed=seed)
        self.features = array

    def __repr__(self) -> str:
        return f"ItemSpace({self.n} items, {self.features.shape[1]} features)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemSpace) and self.n == other.n and np.array_equal(self.features, other.features)
