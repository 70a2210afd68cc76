"""Messages between roles: plain NumPy arrays, never one Python object per transition.

Replay is organised in *lanes*: one lane per actor environment, a time-ordered ring of steps.
A step's observation is stored once; the n-step bootstrap observation of step t is the
observation stored `offset` steps later in the same lane, so nothing is stored twice.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TransitionBatch(NamedTuple):
    """What an actor hands to replay after a collect call.

    `steps` are new raw steps per lane, in time order. `completed` records are earlier steps whose
    n-step return is now known (their bootstrap observation is already among the lane's steps).
    """

    lanes: np.ndarray  # [L] int64 lane ids
    first_position: np.ndarray  # [L] int64 stream position of steps[:, 0] in each lane
    observations: np.ndarray  # [L, T, *frame_shape] one frame per step, never stacked
    actions: np.ndarray  # [L, T] int64
    episode_starts: np.ndarray  # [L, T] int64 stream position of each step's episode start
    completed_lanes: np.ndarray  # [R] int64
    completed_positions: np.ndarray  # [R] int64 stream positions
    returns: np.ndarray  # [R] float32 discounted n-step reward sums
    discounts: np.ndarray  # [R] float32 gamma**m, or 0 when the episode terminated
    offsets: np.ndarray  # [R] int64 m: steps from the record to its bootstrap observation
    priorities: np.ndarray  # [R] float64 initial |TD error| from the actor's own Q values

    @property
    def num_steps(self) -> int:
        return int(self.actions.size)

    def for_shard(self, shard: int, num_shards: int) -> TransitionBatch:
        """The lanes, and completed records, that live on `shard` (lane l is on l % num_shards)."""
        lanes = self.lanes % num_shards == shard
        done = self.completed_lanes % num_shards == shard
        return TransitionBatch(
            self.lanes[lanes],
            self.first_position[lanes],
            self.observations[lanes],
            self.actions[lanes],
            self.episode_starts[lanes],
            self.completed_lanes[done],
            self.completed_positions[done],
            self.returns[done],
            self.discounts[done],
            self.offsets[done],
            self.priorities[done],
        )


class SampleBatch(NamedTuple):
    """A training batch, or one replay shard's rows of one."""

    indices: np.ndarray  # [B] int64 flat storage indices in their shard, for priority updates
    stamps: np.ndarray  # [B] int64 stream positions held by those slots when sampled
    shards: np.ndarray  # [B] int64 the shard each row came from
    observations: np.ndarray  # [B, *obs_shape]
    actions: np.ndarray  # [B] int64
    returns: np.ndarray  # [B] float32
    discounts: np.ndarray  # [B] float32
    next_observations: np.ndarray  # [B, *obs_shape] bootstrap observations
    weights: np.ndarray  # [B] importance weights: (N P(i)) ** -beta from a shard; max 1 once merged


class PriorityUpdate(NamedTuple):
    """New priorities for sampled transitions, from the learner back to their shards."""

    indices: np.ndarray  # [B] int64
    stamps: np.ndarray  # [B] int64 from the SampleBatch; a rewritten slot ignores the update
    shards: np.ndarray  # [B] int64 from the SampleBatch; each shard applies only its own rows
    priorities: np.ndarray  # [B] float64 |TD error|


class Weights(NamedTuple):
    """A versioned copy of the online network for actors and evaluators."""

    version: int
    tensors: dict[str, np.ndarray]


class UpdateResult(NamedTuple):
    """What one learner update returns: priorities for the shard, scalars for the logs."""

    priority_update: PriorityUpdate
    metrics: dict[str, float]


class EvalResult(NamedTuple):
    """Undiscounted returns and lengths of completed evaluation episodes."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))


class ReplayTerms(NamedTuple):
    """The settings that give stored replay its meaning: bootstrap discounts are gamma ** steps,
    and a priority p is held as the mass (p + priority_eps) ** alpha."""

    gamma: float
    alpha: float
    priority_eps: float
