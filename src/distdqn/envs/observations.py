"""Observation spaces beyond a Box: encoded at the env boundary into one flat Box, decoded by the Q-network.

Replay keeps one compact array per slot in a single dtype, and frame stacks are rebuilt from single
stored frames; both want each observation to be one array. So a Discrete, MultiDiscrete, MultiBinary,
Tuple or Dict observation is flattened here, leaf by leaf in a fixed order (Dict keys in the space's
order, Tuple positions in order), into one vector: a Discrete value as its index (value - start), not
a one-hot, so it costs one stored number; Box and MultiBinary values as they are. The vector's dtype
is the smallest integer dtype holding every stored value when no leaf is a float Box (uint8 for small
Discretes and uint8 images), float32 otherwise: a uint8 image beside a float Box is then stored as
float32, four bytes a pixel instead of one.

The space of the encoded observations, `EncodedBox`, carries the `ObservationLayout` (which run of
the vector is which leaf, and how to read it), so every place that builds a Q-network from an
observation space decodes the same way: one-hot for discrete leaves, values for Box leaves, and a CNN
for image leaves (see distdqn.networks). Box observations are not wrapped: they already are one array.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from operator import getitem
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

SUPPORTED_SPACES = "Box, Discrete, MultiDiscrete, MultiBinary, Tuple and Dict of those"


@dataclass(frozen=True)
class Part:
    """One leaf of the observation space: a run of `size` values in the encoded vector."""

    name: str
    """The leaf's keys and positions joined by dots ("image", "0", "agent.position"); empty for a lone leaf."""
    shape: tuple[int, ...]
    """The shape its values are read back in: the leaf's own shape for a Box or MultiBinary leaf, one
    value per category count for a Discrete or MultiDiscrete leaf."""
    categories: tuple[int, ...] = ()
    """For Discrete and MultiDiscrete leaves, each stored value's number of categories (read one-hot);
    empty for Box and MultiBinary leaves, whose values are read as numbers."""
    scale: float = 1.0
    """Factor for the values of a Box leaf: uint8 leaves (images) are read in [0, 1], as uint8 Box
    observations are."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class ObservationLayout:
    """How to read an encoded observation: its parts, in order, and the dtype it is stored in."""

    parts: tuple[Part, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


class _Leaf(NamedTuple):
    path: tuple[Any, ...]
    space: gym.Space
    part: Part
    low: np.ndarray
    high: np.ndarray
    start: np.ndarray
    """Subtracted before storing, so that Discrete values are stored as indices from 0."""


class _UnsupportedLeaf(Exception):
    def __init__(self, name: str, space: gym.Space) -> None:
        super().__init__(name, space)
        self.name, self.space = name, space


class EncodedBox(Box):
    """The Box of encoded observations (one frame, or a stack of them on a first axis), with their layout."""

    def __init__(self, layout: ObservationLayout, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__(low, high, dtype=layout.dtype)
        self.layout = layout

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and getattr(other, "layout", None) == self.layout


def _leaf(path: tuple[Any, ...], space: gym.Space) -> _Leaf:
    name = ".".join(str(key) for key in path)
    if isinstance(space, Discrete):
        part = Part(name, (1,), (int(space.n),))
        return _Leaf(path, space, part, np.zeros(1), np.array([space.n - 1]), np.array([space.start]))
    if isinstance(space, MultiDiscrete):
        nvec = space.nvec.ravel()
        part = Part(name, (nvec.size,), tuple(int(n) for n in nvec))
        return _Leaf(path, space, part, np.zeros(nvec.size), nvec - 1, space.start.ravel())
    if isinstance(space, MultiBinary):
        part = Part(name, tuple(space.shape))
        return _Leaf(path, space, part, np.zeros(part.size), np.ones(part.size), np.zeros(part.size))
    if isinstance(space, Box):
        part = Part(name, tuple(space.shape), scale=1 / 255 if space.dtype == np.uint8 else 1.0)
        return _Leaf(path, space, part, space.low.ravel(), space.high.ravel(), np.zeros(part.size))
    raise _UnsupportedLeaf(name, space)


def _leaves(space: gym.Space, path: tuple[Any, ...] = ()) -> Iterator[_Leaf]:
    """The leaves of `space` in the fixed order of the encoding (Dict keys in the space's order, which
    gymnasium sorts; Tuple positions in order)."""
    if isinstance(space, Dict):
        for key, child in space.spaces.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(space, Tuple):
        for index, child in enumerate(space.spaces):
            yield from _leaves(child, (*path, index))
    else:
        yield _leaf(path, space)


def _storage_dtype(leaves: list[_Leaf]) -> np.dtype:
    if any(isinstance(leaf.space, Box) and np.issubdtype(leaf.space.dtype, np.floating) for leaf in leaves):
        return np.dtype(np.float32)
    low = min(int(leaf.low.min()) for leaf in leaves if leaf.part.size)
    high = max(int(leaf.high.max()) for leaf in leaves if leaf.part.size)
    return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))


def observation_layout(space: gym.Space) -> ObservationLayout:
    """The layout of `space`'s encoded observations; ValueError naming the space (and the part) DQN
    cannot take: a Text, Graph, Sequence or OneOf space, or a Dict or Tuple without leaves."""
    try:
        leaves = list(_leaves(space))
    except _UnsupportedLeaf as leaf:
        part = f" whose part {leaf.name!r} is {leaf.space}" if leaf.name else ""
        raise ValueError(f"observation space {space}{part}") from None
    if not any(leaf.part.size for leaf in leaves):
        raise ValueError(f"observation space {space}, which holds no values")
    return ObservationLayout(tuple(leaf.part for leaf in leaves), _storage_dtype(leaves))


class EncodeObservations(gym.ObservationWrapper):
    """Turns each observation of a non-Box space into its flat encoded vector (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        layout = observation_layout(env.observation_space)
        leaves = list(_leaves(env.observation_space))
        self._paths = [leaf.path for leaf in leaves]
        self._start = np.concatenate([leaf.start for leaf in leaves])
        low = np.concatenate([leaf.low for leaf in leaves]).astype(layout.dtype)
        high = np.concatenate([leaf.high for leaf in leaves]).astype(layout.dtype)
        self.observation_space = EncodedBox(layout, low, high)

    def observation(self, observation: Any) -> np.ndarray:
        values = [np.ravel(reduce(getitem, path, observation)) for path in self._paths]
        return (np.concatenate(values) - self._start).astype(self.observation_space.dtype)
