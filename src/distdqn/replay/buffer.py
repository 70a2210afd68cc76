"""Prioritized replay over lanes of preallocated ring storage; uniform replay is alpha = 0.

Each lane is one actor environment's steps in time order. A slot holds one observation (a
single frame when frames are stacked), the action taken from it, the position where its episode
began and, once known, its folded n-step return, bootstrap discount and the offset of its
bootstrap observation in the same lane. Observations are stored once, in the env's own dtype
(uint8 for frames); stacks and bootstrap observations are rebuilt from positions on sample.
A slot is sampleable only once its n-step record has completed, and only while every frame its
stack and its bootstrap observation are rebuilt from is still stored; final-observation slots and
slots still waiting for rewards have no priority and are never drawn. A lane's first steps in
this buffer (a fresh or restarted shard, or an actor that restarted) start their stacks at the first
frame the buffer holds, as at an episode start, so a stack never holds a frame it never received.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distdqn.errors import CheckpointError
from distdqn.frames import stack_positions
from distdqn.replay.nstep import rediscounted
from distdqn.replay.sum_tree import SumTree
from distdqn.types import PriorityUpdate, SampleBatch

_UNWRITTEN = -(2**62)
"""The position of a slot never written: no stream position, nor one computed from it, equals it."""


SLOT_FIELD_BYTES = 8 + 4 + 4 + 8 + 8 + 8 + 1 + 8
"""Bytes of a slot's fields beside its observation: action, return, discount, offset, position,
episode start, sampleable flag, and a lane's origin (a lane has at least one slot)."""


def replay_bytes(capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> int:
    """What `capacity` slots preallocate: observations, fields, and a sum tree of at most twice
    the next power of two of float64 (an upper bound: shards round their trees separately)."""
    observation = int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
    tree = 2 * 8 * (1 << max(1, (capacity - 1).bit_length()))
    return capacity * (observation + SLOT_FIELD_BYTES) + tree


_STORED = (
    "_observations",
    "_actions",
    "_returns",
    "_discounts",
    "_offsets",
    "_positions",
    "_episode_starts",
    "_origins",
    "_sampleable",
)
"""The buffer's arrays, besides its sum tree: what a snapshot holds."""


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
        shard: int = 0,
    ) -> None:
        """`shard` tags the rows this buffer hands out, so that priorities find their way back."""
        self.num_lanes = num_lanes
        self.lane_capacity = lane_capacity
        self.alpha = alpha
        self.priority_eps = priority_eps
        self.frame_stack = frame_stack
        self.shard = shard
        size = num_lanes * lane_capacity
        self._observations = np.zeros((size, *obs_shape), obs_dtype)
        self._actions = np.zeros(size, np.int64)
        self._returns = np.zeros(size, np.float32)
        self._discounts = np.zeros(size, np.float32)
        self._offsets = np.zeros(size, np.int64)
        self._positions = np.full(size, _UNWRITTEN, np.int64)
        self._episode_starts = np.zeros(size, np.int64)
        self._origins = np.zeros(num_lanes, np.int64)  # first position of each lane's current stream here
        self._sampleable = np.zeros(size, bool)
        self._tree = SumTree(size)
        self._rng = np.random.default_rng(seed)
        self.num_sampleable = 0

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _STORED) + self._tree.nbytes

    def snapshot(self) -> dict[str, Any]:
        """Everything sampling depends on, copied: storage, lane origins, the sum tree and the RNG."""
        return {
            "arrays": {name.lstrip("_"): getattr(self, name).copy() for name in _STORED},
            "tree": self._tree.nodes.copy(),
            "rng": self._rng.bit_generator.state,
        }

    def restore(self, state: dict[str, Any], own_rng: bool = False) -> None:
        """Take a snapshot's contents; it must come from a buffer of the same layout (lanes, lane
        capacity, observation shape and dtype). `own_rng`: keep this buffer's sampling stream."""
        for name in _STORED:
            mine, saved = getattr(self, name), np.asarray(state["arrays"][name.lstrip("_")])
            if saved.shape != mine.shape or saved.dtype != mine.dtype:
                raise CheckpointError(
                    f"the checkpoint's replay {name.lstrip('_')} is {saved.dtype}{list(saved.shape)}; "
                    f"this config's replay needs {mine.dtype}{list(mine.shape)}"
                )
            setattr(self, name, saved if saved.flags.writeable else saved.copy())
        self._tree.restore(np.asarray(state["tree"]))
        if not own_rng:
            self._rng.bit_generator.state = state["rng"]
        self.num_sampleable = int(np.count_nonzero(self._sampleable))

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
        Stored episode starts are clamped at the lane's origin: see `_track_origins`.
        """
        steps = actions.shape[1]
        self._track_origins(lanes, first_positions)
        positions = first_positions[:, None] + np.arange(steps)[None, :]
        slots = self._slots(lanes[:, None], positions).ravel()
        self._observations[slots] = observations.reshape(len(slots), *observations.shape[2:])
        self._actions[slots] = actions.ravel()
        self._positions[slots] = positions.ravel()
        self._episode_starts[slots] = np.maximum(episode_starts, self._origins[lanes][:, None]).ravel()
        before = first_positions[:, None] - np.arange(1, max_offset + 1)[None, :]
        before_slots = self._slots(lanes[:, None], before).ravel()
        foreign = before_slots[self._positions[before_slots] != before.ravel()]
        oldest = first_positions[:, None] + steps - self.lane_capacity + np.arange(self.frame_stack - 1)[None, :]
        stale = np.concatenate([slots, foreign, self._slots(lanes[:, None], oldest).ravel()])
        self._set_sampleable(stale, False)
        self._tree.update(stale, np.zeros(len(stale)))

    def _track_origins(self, lanes: np.ndarray, first_positions: np.ndarray) -> None:
        """A lane whose new steps do not follow the step this buffer holds before them (its first
        write here, or its actor restarted) starts a new stream at `first_positions`: its frames
        from before were never received, so its stacks start there, as at an episode start."""
        previous = self._positions[self._slots(lanes, first_positions - 1)]
        restarted = previous != first_positions - 1
        self._origins[lanes[restarted]] = first_positions[restarted]

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

        Records are dropped unless every step from their stack's first frame to their bootstrap
        observation is still stored (the oldest records of a lane may already have lost frames).
        """
        slots = self._slots(lanes, positions)
        present = self._live(lanes, positions, positions + offsets)
        slots = slots[present]
        self._returns[slots] = returns[present]
        self._discounts[slots] = discounts[present]
        self._offsets[slots] = offsets[present]
        self._set_sampleable(slots, True)
        self._tree.update(slots, self._priority_mass(priorities[present]))

    def _live(self, lanes: np.ndarray, positions: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Whether each lane's slots still hold every position from the stack of `positions`
        (clamped at its episode start) through `ends`."""
        held_starts = self._episode_starts[self._slots(lanes, positions)]
        firsts = np.minimum(np.maximum(positions - (self.frame_stack - 1), held_starts), positions)
        width = self.frame_stack + int(np.max(ends - positions, initial=0))
        wanted = np.minimum(firsts[:, None] + np.arange(width)[None, :], ends[:, None])
        return (self._positions[self._slots(lanes[:, None], wanted)] == wanted).all(axis=1)

    def rescale_priorities(self, alpha: float, priority_eps: float) -> None:
        """Masses stored under another `alpha` and `priority_eps`: recover the priorities they
        encode and store them as this buffer's masses. Uniform replay (alpha 0) encodes none:
        each stored transition then counts as priority 1 until it is sampled again."""
        slots = np.flatnonzero(self._sampleable)
        if alpha > 0:
            priorities = np.maximum(self._tree.values(slots) ** (1.0 / alpha) - priority_eps, 0.0)
        else:
            priorities = np.ones(len(slots))
        self._tree.update(slots, self._priority_mass(priorities))

    def rediscount(self, gamma: float) -> None:
        """Bootstrap discounts under another `gamma`: gamma ** (steps to the bootstrap), and still
        0 after a terminal. Exact for one-step returns only (n-step ones fold gamma in)."""
        self._discounts[:] = rediscounted(self._discounts, self._offsets, gamma)

    def _priority_mass(self, priorities: np.ndarray) -> np.ndarray:
        return (np.abs(priorities) + self.priority_eps) ** self.alpha

    @property
    def mass(self) -> float:
        """Priority mass of the sampleable slots: the sum of their priority ** alpha."""
        return self._tree.total

    def sample(self, batch_size: int, beta: float, total_size: int | None = None, share: float = 1.0) -> SampleBatch:
        """Draw `batch_size` slots with probability proportional to priority ** alpha.

        Stratified: one draw from each of `batch_size` equal slices of the mass, as in the PER
        paper. The buffer may be one shard of a logical replay of `total_size` transitions (default:
        just this buffer) that draws each row from this shard with probability `share`; then slot i
        is drawn with P(i) = share * p_i / mass, and its importance weight is (N * P(i)) ** -beta.
        Weights are left unnormalized: the batch's largest is known only once every shard's rows
        are together (the learner divides by it).
        """
        if self.num_sampleable == 0 or batch_size == 0:
            return self._empty_sample()
        total_size = self.num_sampleable if total_size is None else total_size
        mass = self._tree.total
        targets = (np.arange(batch_size) + self._rng.random(batch_size)) * (mass / batch_size)
        slots = self._tree.find(targets)
        probabilities = share * self._tree.values(slots) / mass
        weights = (total_size * probabilities) ** (-beta)
        lanes = slots // self.lane_capacity
        bootstrap = self._slots(lanes, self._positions[slots] + self._offsets[slots])
        return SampleBatch(
            indices=slots,
            stamps=self._positions[slots].copy(),
            shards=np.full(len(slots), self.shard, np.int64),
            observations=self._stacked(lanes, slots),
            actions=self._actions[slots],
            returns=self._returns[slots],
            discounts=self._discounts[slots],
            next_observations=self._stacked(lanes, bootstrap),
            weights=weights,
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
        return SampleBatch(
            nothing,
            nothing,
            nothing,
            observations,
            nothing,
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            observations,
            np.zeros(0),
        )

    def update_priorities(self, update: PriorityUpdate) -> None:
        """Set new priorities of this buffer's rows (an update may carry other shards' rows too),
        skipping slots rewritten since they were sampled."""
        mine = update.shards == self.shard
        indices = update.indices[mine]
        current = (self._positions[indices] == update.stamps[mine]) & self._sampleable[indices]
        self._tree.update(indices[current], self._priority_mass(update.priorities[mine][current]))
