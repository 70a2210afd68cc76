"""Frame stacks: built live for acting, rebuilt from single stored frames for learning.

Environments hand out one frame per step; replay stores exactly that frame once. A stack of
depth S for step p is the frames of steps p-S+1 .. p of the same lane, where steps before the
episode's first are replaced by that first frame (the DQN convention at an episode start). The
actor and evaluator keep live stacks with `FrameStacker`; replay rebuilds the same stacks with
`stack_positions`, so both sides agree frame for frame.
"""

from __future__ import annotations

import numpy as np


def stack_positions(positions: np.ndarray, episode_starts: np.ndarray, depth: int) -> np.ndarray:
    """[B] step positions -> [B, depth] positions of their stack's frames, oldest first."""
    offsets = np.arange(depth - 1, -1, -1)
    return np.maximum(positions[:, None] - offsets[None, :], episode_starts[:, None])


class FrameStacker:
    """Live stacks for `num_envs` envs: [num_envs, depth, *frame_shape], oldest frame first."""

    def __init__(self, num_envs: int, frame_shape: tuple[int, ...], dtype: np.dtype, depth: int) -> None:
        self.depth = depth
        self._stacks = np.zeros((num_envs, depth, *frame_shape), dtype)

    def push(self, frames: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        """Add this step's frames; envs starting an episode get a stack of their first frame."""
        self._stacks[:, :-1] = self._stacks[:, 1:]
        self._stacks[:, -1] = frames
        self._stacks[new_episode] = frames[new_episode][:, None]
        return self._stacks

    @property
    def stacks(self) -> np.ndarray:
        return self._stacks

    def restore(self, stacks: np.ndarray) -> None:
        self._stacks[...] = stacks
