"""A single-file DQN in the style of CleanRL's dqn.py, with its default hyperparameters.

Written here (not copied) as the "one screen of control flow" baseline: one env, a NumPy replay
buffer, an MLP 120-84, Adam 2.5e-4, batch 128, one update every 10 steps after 10,000 steps,
target copy every 500 steps, epsilon 1 -> 0.05 over half of 500k steps. Timed under the same
protocol as `sb3_cartpole.py` (`greedy_eval.GreedyEvaluator`), so the numbers sit side by side.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from greedy_eval import GreedyEvaluator
from sb3_cartpole import EVAL_EVERY, SOLVED_RETURN
from torch import nn

TOTAL_TIMESTEPS = 500_000
LEARNING_RATE = 2.5e-4
BUFFER_SIZE = 10_000
GAMMA = 0.99
TARGET_NETWORK_FREQUENCY = 500
BATCH_SIZE = 128
START_E, END_E, EXPLORATION_FRACTION = 1.0, 0.05, 0.5
LEARNING_STARTS = 10_000
TRAIN_FREQUENCY = 10


class _GreedyPolicy:
    """What GreedyEvaluator calls: `predict(observations, deterministic)` -> (actions, None)."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def predict(self, observations: np.ndarray, deterministic: bool = True):
        with torch.no_grad():
            return self.network(torch.as_tensor(observations, dtype=torch.float32)).argmax(1).numpy(), None


def run_cleanrl_style_cartpole(seed: int, max_steps: int = TOTAL_TIMESTEPS) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("CartPole-v1")
    q_network = nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))
    target_network = copy.deepcopy(q_network)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=LEARNING_RATE)
    observations = np.zeros((BUFFER_SIZE, 4), np.float32)
    next_observations = np.zeros((BUFFER_SIZE, 4), np.float32)
    actions = np.zeros(BUFFER_SIZE, np.int64)
    rewards = np.zeros(BUFFER_SIZE, np.float32)
    dones = np.zeros(BUFFER_SIZE, np.float32)
    evaluator = GreedyEvaluator(seed)
    policy = _GreedyPolicy(q_network)
    solved_at, evals = None, []
    observation, _ = env.reset(seed=seed)
    started = time.perf_counter()
    for step in range(1, max_steps + 1):
        epsilon = max(END_E, START_E + (END_E - START_E) * step / (EXPLORATION_FRACTION * max_steps))
        if rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            action = int(policy.predict(observation[None])[0][0])
        next_observation, reward, terminated, truncated, _ = env.step(action)
        slot = (step - 1) % BUFFER_SIZE
        observations[slot], actions[slot], rewards[slot] = observation, action, reward
        next_observations[slot], dones[slot] = next_observation, float(terminated)  # truncation bootstraps
        observation = next_observation if not (terminated or truncated) else env.reset()[0]
        if step > LEARNING_STARTS and step % TRAIN_FREQUENCY == 0:
            index = rng.integers(min(step, BUFFER_SIZE), size=BATCH_SIZE)
            with torch.no_grad():
                target_max = target_network(torch.from_numpy(next_observations[index])).max(1).values
                target = torch.from_numpy(rewards[index]) + GAMMA * target_max * (1 - torch.from_numpy(dones[index]))
            q = q_network(torch.from_numpy(observations[index])).gather(1, torch.from_numpy(actions[index])[:, None])
            loss = F.mse_loss(q.squeeze(1), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % TARGET_NETWORK_FREQUENCY == 0:
                target_network.load_state_dict(q_network.state_dict())
        if step % EVAL_EVERY == 0:
            mean_return = evaluator.mean_return(policy)
            evals.append((step, mean_return))
            if mean_return >= SOLVED_RETURN:
                solved_at = (step, time.perf_counter() - started)
                break
    elapsed = time.perf_counter() - started
    evaluator.close()
    env.close()
    steps, wall_s = solved_at if solved_at else (None, None)
    return {
        "system": "cleanrl-style",
        "seed": seed,
        "solved": solved_at is not None,
        "steps_to_solve": steps,
        "wall_s": wall_s,
        "env_steps_per_s": (steps or max_steps) / (wall_s or elapsed),
    }
