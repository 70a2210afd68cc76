"""Prioritized replay over lanes of preallocated ring storage; uniform replay is alpha = 0.

Each lane is one actor environment's steps in time order. A slot holds one observation (a
single frame when frames are stacked), the action taken from it, the position where its episode
began and, once known, its folded n-step return, bootstrap discount and the offset of its
bootstrap observation in the same lane. Observations are stored once, in the env's own dtype
(uint8 for frames); stacks and bootstrap observations are rebuilt from positions on sample.
A slot is sampleable only once its n-step record has completed; final-observation slots and
slots still waiting for rewards have no priority and are never drawn.
"""

from __future__ import annotations

import numpy as np

from distdqn.frames import stack_positions
from distdqn.replay.sum_tree import SumTree
from distdqn.types import PriorityUpdate, SampleBatch


class PrioritizedReplay:
    def __init__(
        self,
        num_lanes: int,
        lane_capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        alpha: float,
        priority_eps: float,
        seed: int,
        frame_stack: int = 1,
    ) -> None:
        self.num_lanes = num_lanes
        self.lane_capacity = lane_capacity
        self.alpha = alpha
        self.priority_eps = priority_eps
        self.frame_stack = frame_stack
        size = num_lanes * lane_capacity
        self._observations = np.zeros((size, *obs_shape), obs_dtype)
        self._actions = np.zeros(size, np.int64)
        self._returns = np.zeros(size, np.float32)
        self._discounts = np.zeros(size, np.float32)
        self._offsets = np.zeros(size, np.int64)
        self._positions = np.full(size, -1, np.int64)
        self._episode_starts = np.zeros(size, np.int64)
        self._sampleable = np.zeros(size, bool)
        self._tree = SumTree(size)
        self._rng = np.random.default_rng(seed)
        self.num_sampleable = 0

    @property
    def nbytes(self) -> int:
        arrays = (self._observations, self._actions, self._returns, self._discounts, self._offsets,
                  self._positions, self._episode_starts, self._sampleable)
        return sum(a.nbytes for a in arrays) + self._tree.nbytes

    def _slots(self, lanes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return lanes * self.lane_capacity + positions % self.lane_capacity

    def _set_sampleable(self, slots: np.ndarray, flag: bool) -> None:
        changed = self._sampleable[slots] != flag
        self.num_sampleable += int(np.count_nonzero(changed)) * (1 if flag else -1)
        self._sampleable[slots] = flag

    def write_steps(
        self,
        lanes: np.ndarray,
        first_positions: np.ndarray,
        observations: np.ndarray,
        actions: np.ndarray,
        episode_starts: np.ndarray,
        max_offset: int,
    ) -> None:
        """Store T new steps per lane ([L, T, ...]); they overwrite the lanes' oldest slots.

        Two neighbourhoods of the new steps stop being sampleable: the `max_offset` slots before
        them whose positions do not run on into the new steps (the lane's actor restarted and
        counts from 0 again, so they would bootstrap from a foreign observation), and the
        `frame_stack - 1` oldest survivors after them, whose stacks reach into overwritten frames.
        """
        steps = actions.shape[1]
        positions = first_positions[:, None] + np.arange(steps)[None, :]
        slots = self._slots(lanes[:, None], positions).ravel()
        self._observations[slots] = observations.reshape(len(slots), *observations.shape[2:])
        self._actions[slots] = actions.ravel()
        self._positions[slots] = positions.ravel()
        self._episode_starts[slots] = episode_starts.ravel()
        before = first_positions[:, None] - np.arange(1, max_offset + 1)[None, :]
        before_slots = self._slots(lanes[:, None], before).ravel()
        foreign = before_slots[self._positions[before_slots] != before.ravel()]
        oldest = first_positions[:, None] + steps - self.lane_capacity + np.arange(self.frame_stack - 1)[None, :]
        stale = np.concatenate([slots, foreign, self._slots(lanes[:, None], oldest).ravel()])
        self._set_sampleable(stale, False)
        self._tree.update(stale, np.zeros(len(stale)))

    def complete(
        self,
        lanes: np.ndarray,
        positions: np.ndarray,
        returns: np.ndarray,
        discounts: np.ndarray,
        offsets: np.ndarray,
        priorities: np.ndarray,
    ) -> None:
        """Attach n-step returns to stored steps and make them sampleable with a priority.

        Records whose slot or bootstrap slot no longer holds the expected step are dropped.
        """
        slots = self._slots(lanes, positions)
        bootstrap = self._slots(lanes, positions + offsets)
        present = (self._positions[slots] == positions) & (self._positions[bootstrap] == positions + offsets)
        slots = slots[present]
        self._returns[slots] = returns[present]
        self._discounts[slots] = discounts[present]
        self._offsets[slots] = offsets[present]
        self._set_sampleable(slots, True)
        self._tree.update(slots, self._priority_mass(priorities[present]))

    def _priority_mass(self, priorities: np.ndarray) -> np.ndarray:
        return (np.abs(priorities) + self.priority_eps) ** self.alpha

    def sample(self, batch_size: int, beta: float) -> SampleBatch:
        """Draw `batch_size` slots with probability proportional to priority ** alpha.

        Stratified: one draw from each of `batch_size` equal slices of the total mass, as in
        the PER paper. Importance weights (N * P(i)) ** -beta are divided by the batch's
        largest, so the biggest weight is 1 and weights only ever scale updates down.
        """
        if self.num_sampleable == 0:
            return self._empty_sample()
        total = self._tree.total
        targets = (np.arange(batch_size) + self._rng.random(batch_size)) * (total / batch_size)
        slots = self._tree.find(targets)
        probabilities = self._tree.values(slots) / total
        weights = (self.num_sampleable * probabilities) ** (-beta)
        weights /= weights.max()
        lanes = slots // self.lane_capacity
        bootstrap = self._slots(lanes, self._positions[slots] + self._offsets[slots])
        return SampleBatch(
            indices=slots,
            stamps=self._positions[slots].copy(),
            observations=self._stacked(lanes, slots),
            actions=self._actions[slots],
            returns=self._returns[slots],
            discounts=self._discounts[slots],
            next_observations=self._stacked(lanes, bootstrap),
            weights=weights.astype(np.float32),
        )

    def _stacked(self, lanes: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Observations of `slots`, as [B, frame_stack, *frame] stacks when frames are stacked."""
        if self.frame_stack == 1:
            return self._observations[slots]
        positions = stack_positions(self._positions[slots], self._episode_starts[slots], self.frame_stack)
        return self._observations[self._slots(lanes[:, None], positions)]

    def _empty_sample(self) -> SampleBatch:
        """What sampling an empty replay gives (a shard restarted after a crash): no rows."""
        nothing = np.zeros(0, np.int64)
        observations = self._stacked(nothing, nothing)
        return SampleBatch(nothing, nothing, observations, nothing, np.zeros(0, np.float32),
                           np.zeros(0, np.float32), observations, np.zeros(0, np.float32))

    def update_priorities(self, update: PriorityUpdate) -> None:
        """Set new priorities, skipping slots rewritten since they were sampled."""
        current = (self._positions[update.indices] == update.stamps) & self._sampleable[update.indices]
        self._tree.update(update.indices[current], self._priority_mass(update.priorities[current]))
