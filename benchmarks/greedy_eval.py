"""The greedy evaluation that benchmarks against other DQNs share, so that every system's
returns come from the same episodes.

Each of `episodes` plain envs (not a vector env: it would auto-reset, and an evaluation wants
exactly one complete episode per env) is seeded once, at its first reset, with
``EVAL_SEED_OFFSET + seed * 1000 + i``; later resets continue that env's RNG, so successive
evaluations see fresh but reproducible start states. The offset keeps evaluation seeds apart from
the training seed ``seed``. For envs that draw random numbers only when they reset (CartPole,
highway-env's highway), the start states do not depend on the policy either: two systems
evaluated at the same points of their runs play the same starts.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

EVAL_SEED_OFFSET = 1_000_000


class Predictor(Protocol):
    """What the evaluator calls, Stable-Baselines3's interface: a batch of observations ->
    (actions, state)."""

    def predict(self, observation: np.ndarray, *, deterministic: bool = ...) -> tuple[np.ndarray, Any]: ...


class GreedyEvaluator:
    """Plays one greedy episode per env; active envs step in lockstep, so the policy runs one
    batched forward pass per step."""

    def __init__(self, seed: int, env_id: str = "CartPole-v1", episodes: int = 10) -> None:
        self._envs = [gym.make(env_id) for _ in range(episodes)]
        self._pending_seeds: list[int | None] = [EVAL_SEED_OFFSET + seed * 1000 + i for i in range(episodes)]

    def returns(self, model: Predictor) -> np.ndarray:
        """The undiscounted return of one episode per env."""
        obs = []
        for i, env in enumerate(self._envs):
            ob, _ = env.reset(seed=self._pending_seeds[i])
            self._pending_seeds[i] = None
            obs.append(ob)
        returns = np.zeros(len(self._envs))
        active = list(range(len(self._envs)))
        while active:
            actions, _ = model.predict(np.stack([obs[i] for i in active]), deterministic=True)
            still_active = []
            for i, action in zip(active, actions, strict=True):
                obs[i], reward, terminated, truncated, _ = self._envs[i].step(int(action))
                returns[i] += float(reward)
                if not (terminated or truncated):
                    still_active.append(i)
            active = still_active
        return returns

    def mean_return(self, model: Predictor) -> float:
        return float(self.returns(model).mean())

    def close(self) -> None:
        for env in self._envs:
            env.close()
