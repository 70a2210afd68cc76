"""Folding n-step returns as steps arrive, for all environments of an actor at once.

Lanes advance together: every vector-env step writes one record per lane, so a lane's stream
position is the same for all lanes of an actor. A record t collects r_t, gamma r_{t+1}, ... and
completes when it holds n rewards (bootstrap from the observation n steps later) or when its
episode ends first. A terminated episode does not bootstrap (discount 0); a truncated one does,
from the final observation, which gymnasium's next-step autoreset hands us as a record of its own.
That final-observation record never completes, so it is never sampled.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Completed(NamedTuple):
    """Records whose n-step return became known at one step."""

    lanes: np.ndarray  # [R] index of the environment within the actor
    positions: np.ndarray  # [R] stream position of the record
    returns: np.ndarray  # [R] float32
    discounts: np.ndarray  # [R] float32
    offsets: np.ndarray  # [R] int64 steps to the bootstrap observation
    q_taken: np.ndarray  # [R] float32 the actor's Q(s, a) when it acted


def rediscounted(discounts: np.ndarray, offsets: np.ndarray, gamma: float) -> np.ndarray:
    """The bootstrap discounts of stored records under another `gamma`, from their step counts:
    a record that bootstraps `offset` steps ahead gets gamma ** offset; a terminal one keeps 0."""
    return np.where(discounts == 0, 0.0, np.float64(gamma) ** offsets).astype(np.float32)


class NStepAccumulator:
    """Vectorized n-step folding over `num_envs` lanes (one pending slot per lane and lag)."""

    def __init__(self, num_envs: int, n_step: int, gamma: float, start_position: int = 0) -> None:
        self.n_step = n_step
        self.gamma = gamma
        self.position = start_position
        self._returns = np.zeros((num_envs, n_step), np.float64)
        self._ages = np.zeros((num_envs, n_step), np.int64)
        self._q_taken = np.zeros((num_envs, n_step), np.float32)
        self._active = np.zeros((num_envs, n_step), bool)
        self._resetting = np.zeros(num_envs, bool)

    _STATE = ("_returns", "_ages", "_q_taken", "_active", "_resetting")

    def snapshot(self) -> dict[str, Any]:
        """The records still folding, copied, and the stream position."""
        return {"position": self.position, **{name.lstrip("_"): getattr(self, name).copy() for name in self._STATE}}

    def restore(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
        for name in self._STATE:
            mine = getattr(self, name)
            setattr(self, name, np.array(state[name.lstrip("_")], mine.dtype).reshape(mine.shape))

    @property
    def resetting(self) -> np.ndarray:
        """Lanes whose next step is gymnasium's autoreset step (their episode just ended)."""
        return self._resetting.copy()

    @staticmethod
    def nothing_completed() -> Completed:
        return Completed(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
        )

    def step(
        self,
        q_taken: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        resets: np.ndarray | None = None,
    ) -> Completed:
        """Record one vector step taken at `self.position`; return the records it completes.

        Lanes whose previous step ended an episode are in gymnasium's autoreset step: their
        record at this position is the final observation, which opens no transition.
        `terminated` is what learning treats as terminal; `resets` (default: terminated or
        truncated) is whether the env really resets. They differ for a lost life: terminal for
        learning, while the game goes on.
        """
        slot = self.position % self.n_step
        live = ~self._resetting
        self._active[:, slot] = live
        self._returns[:, slot] = 0.0
        self._ages[:, slot] = 0
        self._q_taken[:, slot] = q_taken

        self._returns += np.where(self._active, self.gamma**self._ages * rewards[:, None], 0.0)
        self._ages += self._active
        ended = (terminated | truncated) & live
        resetting = ended if resets is None else resets & live
        complete = self._active & ((self._ages == self.n_step) | ended[:, None])
        lane, which = np.nonzero(complete)
        ages = self._ages[lane, which]
        discounts = np.where(terminated[lane], 0.0, self.gamma**ages)
        completed = Completed(
            lanes=lane.astype(np.int64),
            positions=self.position - ages + 1,
            returns=self._returns[lane, which].astype(np.float32),
            discounts=discounts.astype(np.float32),
            offsets=ages,
            q_taken=self._q_taken[lane, which],
        )
        self._active &= ~complete
        self._resetting = resetting
        self.position += 1
        return completed
