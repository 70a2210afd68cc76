"""The evaluator: greedy episodes on its own, separately seeded envs."""

from __future__ import annotations

import numpy as np
import torch

from distdqn.config import EnvConfig, NetworkConfig
from distdqn.envs import frame_box, make_vector_env, num_actions, policy_space
from distdqn.frames import FrameStacker
from distdqn.networks import build_q_network, load_weights
from distdqn.seeding import env_seeds, role_rng
from distdqn.types import EvalResult, Weights


class Evaluator:
    """Runs `episodes` episodes side by side, one per env. Every evaluation is seeded by its
    caller, so a recorded score can be reproduced from its seed (`distdqn evaluate --seed`)."""

    def __init__(
        self,
        env: EnvConfig,
        network: NetworkConfig,
        episodes: int,
        epsilon: float = 0.0,
        max_episode_steps: int = 27_000,
    ) -> None:
        """Episodes are cut after `max_episode_steps`: an env without a time limit (CliffWalking)
        and a policy that never reaches an end would otherwise evaluate forever."""
        self.env = make_vector_env(env, episodes)
        frame_space = frame_box(self.env.single_observation_space)
        self.q_network = build_q_network(network, policy_space(env, frame_space), self.env.single_action_space)
        self.q_network.requires_grad_(False)
        self.episodes = episodes
        self.epsilon = epsilon
        self.max_episode_steps = max_episode_steps
        self._stacker = (
            FrameStacker(episodes, frame_space.shape, frame_space.dtype, env.frame_stack)
            if env.frame_stack > 1
            else None
        )

    def _policy_input(self, frames: np.ndarray, new_episode: bool) -> np.ndarray:
        if self._stacker is None:
            return frames
        return self._stacker.push(frames, np.full(self.episodes, new_episode))

    def evaluate(self, weights: Weights, seed: int) -> EvalResult:
        """One episode per env with raw rewards: no clipping, and a lost life is not an end.
        Environment k and the epsilon draws take their own streams of `seed`."""
        load_weights(self.q_network, weights.tensors)
        rng = role_rng(seed, "evaluator", 0)
        seeds: list[int | None] = [*env_seeds(seed, "evaluator", 0, self.episodes)]
        frames, _ = self.env.reset(seed=seeds)
        observations = self._policy_input(frames, new_episode=True)
        returns = np.zeros(self.episodes)
        lengths = np.zeros(self.episodes, np.int64)
        running = np.ones(self.episodes, bool)
        actions_count = num_actions(self.env.single_action_space)
        while running.any():
            with torch.inference_mode():
                actions = self.q_network(torch.as_tensor(observations)).numpy().argmax(axis=1)
            if self.epsilon > 0:
                explore = rng.random(self.episodes) < self.epsilon
                actions = np.where(explore, rng.integers(actions_count, size=self.episodes), actions)
            frames, rewards, terminated, truncated, _ = self.env.step(actions)
            observations = self._policy_input(frames, new_episode=False)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            running &= ~(terminated | truncated) & (lengths < self.max_episode_steps)
        return EvalResult(returns, lengths)
