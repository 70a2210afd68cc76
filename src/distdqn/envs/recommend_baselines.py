"""Baselines for `distdqn/Recommend-v0`: what a learned recommender should beat, and what it should
not settle for.

- `RandomRecommender` recommends an item drawn uniformly from the catalog.
- `MyopicRecommender` is an oracle of the immediate reward: it reads the env's latent user
  interests (which no agent sees) and recommends the item with the highest expected engagement
  of this one step. It is the best possible greedy-for-now recommender, and it falls for
  clickbait, whose appeal wins the next click but shortens the session; a recommender that plans
  can beat it on the return.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np

from distdqn.envs.recommend import RecommendEnv

TOPIC_OFFSET = 4.0
"""Added per topic index to qualities (which lie in [-1, 1]) so that one running maximum over all
topics, sorted by topic, restarts at each topic."""


class Recommender(Protocol):
    def act(self, observation: np.ndarray) -> int:
        """The item to recommend next."""
        ...


class RandomRecommender:
    """Uniformly random items, from its own seeded generator."""

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items = num_items
        self.rng = np.random.default_rng(seed)

    def act(self, observation: np.ndarray) -> int:
        return int(self.rng.integers(self.num_items))


def pareto_front(env: RecommendEnv) -> np.ndarray:
    """The items no other item of their topic beats in both appeal and quality, by topic.

    Expected immediate engagement grows with appeal and with quality, whatever the user's interest
    in the topic, so the best item for any user is on this front; it holds about ln(items per
    topic) items of each kind (regular, clickbait) per topic: a few hundred for 10^6 items."""
    order = np.lexsort((-env.item_quality, -env.item_appeal, env.item_topic))
    shifted = env.item_quality[order].astype(np.float64) + TOPIC_OFFSET * env.item_topic[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(shifted)[:-1]])
    return order[shifted > best_before]


class MyopicRecommender:
    """The item of highest expected immediate engagement for the current latent user (an oracle of
    the next reward; see the module docstring). Builds its candidates once in O(num_items log
    num_items), then costs O(front size) per step."""

    def __init__(self, env: gym.Env) -> None:
        recommend = env.unwrapped
        if not isinstance(recommend, RecommendEnv):
            raise TypeError(f"the myopic baseline needs a RecommendEnv, got {type(recommend).__name__}")
        self.env = recommend
        self.candidates = pareto_front(recommend)

    def act(self, observation: np.ndarray) -> int:
        return int(self.candidates[np.argmax(self.env.expected_engagement(self.candidates))])


def play_episode(env: gym.Env, recommender: Recommender, seed: int) -> tuple[float, int]:
    """The return and length of one episode of `recommender` on `env`, reset with `seed`."""
    observation, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(recommender.act(observation))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps
