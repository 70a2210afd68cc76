"""A run's role instances, spawned on the runtime where the placement puts them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distdqn.config import Config
from distdqn.envs import env_spaces, policy_space
from distdqn.roles import Actor, Evaluator, Learner, ReplayShard
from distdqn.runtime import Runtime


@dataclass(frozen=True)
class RunRoles:
    learners: list[Any]
    replicas: list[list[Any]]
    """The learners of each data-parallel replica: its head shards, which share every batch."""
    shards: list[Any]
    actors: list[Any]
    evaluator: Any

    def handles(self) -> dict[str, Any]:
        """Every role instance by the name the supervisor and placement.json use."""
        return {
            "evaluator": self.evaluator,
            **{f"learner-{i}": h for i, h in enumerate(self.learners)},
            **{f"shard-{j}": h for j, h in enumerate(self.shards)},
            **{f"actor-{i}": h for i, h in enumerate(self.actors)},
        }


def spawn_roles(config: Config, runtime: Runtime, latest: str, actor_progress: int, resumed_at: int | None) -> RunRoles:
    """`latest`: where a (restarted) learner loads the run's checkpoint from; `actor_progress`:
    each actor's share of the env steps so far; `resumed_at`: where random streams branch off
    (see `Actor`)."""
    placement = config.placement
    frame_space, action_space = env_spaces(config.env)
    observations = policy_space(config.env, frame_space)
    learners = [
        runtime.spawn(Learner, config, observations, action_space, latest, i, name=f"learner-{i}")
        for i in range(placement.num_learners)
    ]
    shards = placement.head_shards
    evaluation = config.evaluation
    return RunRoles(
        learners=learners,
        replicas=[learners[r : r + shards] for r in range(0, placement.num_learners, shards)],
        shards=[
            runtime.spawn(ReplayShard, config, j, frame_space, resumed_at, name=f"shard-{j}")
            for j in range(placement.num_shards)
        ],
        actors=[
            runtime.spawn(Actor, config, i, actor_progress, resumed_at, name=f"actor-{i}")
            for i in range(placement.num_actors)
        ],
        evaluator=runtime.spawn(
            Evaluator,
            config.env,
            config.network,
            evaluation.episodes,
            evaluation.epsilon,
            evaluation.max_episode_steps,
            name="evaluator",
        ),
    )
