"""A replay shard: the lanes of the actor environments routed to it, and their priorities.

Lane l (actor i's environment j is lane i * num_envs + j) lives on shard l % num_shards, so each
lane's steps stay in time order on one shard and actors' data spreads evenly over shards.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym

from distdqn.config import Config, lane_capacity, shard_lanes
from distdqn.envs import frame_box
from distdqn.replay.buffer import PrioritizedReplay
from distdqn.seeding import stream_seed
from distdqn.types import ReplayTerms, SampleBatch, TransitionBatch, UpdateResult


class ReplayShard:
    def __init__(
        self, config: Config, shard_index: int, observation_space: gym.Space, resumed_at: int | None = None
    ) -> None:
        """`observation_space` is one env's single frame: stacks are rebuilt on sample.
        `resumed_at`: the env step a run continued from without this shard's saved sampling
        stream (see `Actor`); the stream branches off there."""
        placement = config.placement
        self.shard_index = shard_index
        self.num_shards = placement.num_shards
        local_lanes = shard_lanes(config, shard_index)
        if local_lanes == 0:
            total_lanes = placement.num_actors * config.env.num_envs
            raise ValueError(f"shard {shard_index} gets no lanes: {total_lanes} lanes over {self.num_shards} shards")
        frames = frame_box(observation_space)
        self.replay = PrioritizedReplay(
            num_lanes=local_lanes,
            lane_capacity=lane_capacity(config, shard_index),
            obs_shape=frames.shape,
            obs_dtype=frames.dtype,
            alpha=config.replay.alpha,
            priority_eps=config.replay.priority_eps,
            seed=stream_seed(config.seed, "shard", shard_index, *(() if resumed_at is None else (resumed_at,))),
            frame_stack=config.env.frame_stack,
            shard=shard_index,
        )
        self.n_step = config.algorithm.n_step
        self.gamma = config.algorithm.gamma
        self.inserted = 0
        self.sampled = 0

    def add(self, batch: TransitionBatch) -> int:
        """Store this shard's lanes of the batch; return how many steps it kept."""
        batch = batch.for_shard(self.shard_index, self.num_shards)  # a no-op for a batch already split
        local = batch.lanes // self.num_shards
        self.replay.write_steps(
            local, batch.first_position, batch.observations, batch.actions, batch.episode_starts, self.n_step
        )
        self.replay.complete(
            batch.completed_lanes // self.num_shards,
            batch.completed_positions,
            batch.returns,
            batch.discounts,
            batch.offsets,
            batch.priorities,
        )
        self.inserted += batch.num_steps
        return batch.num_steps

    def snapshot(self) -> dict[str, Any]:
        """This shard's whole state, copied, for a checkpoint that resumes exactly."""
        return {"replay": self.replay.snapshot(), "inserted": self.inserted, "sampled": self.sampled}

    def restore(self, state: dict[str, Any], built_under: ReplayTerms | None = None, own_streams: bool = False) -> None:
        """Take a snapshot. `built_under`: the terms its contents were stored under, where they
        differ from this shard's config; what they mean is recomputed (priority masses, and the
        bootstrap discounts of one-step returns). `own_streams`: keep this shard's sampling stream."""
        self.replay.restore(state["replay"], own_streams)
        self.inserted, self.sampled = int(state["inserted"]), int(state["sampled"])
        if built_under is None:
            return
        if (built_under.alpha, built_under.priority_eps) != (self.replay.alpha, self.replay.priority_eps):
            self.replay.rescale_priorities(built_under.alpha, built_under.priority_eps)
        if built_under.gamma != self.gamma:
            if self.n_step != 1:
                raise ValueError(f"n-step returns folded under gamma {built_under.gamma} cannot be recomputed")
            self.replay.rediscount(self.gamma)

    def stats(self) -> dict[str, int]:
        return {"inserted": self.inserted, "sampled": self.sampled, "size": self.size()}

    def size(self) -> int:
        """Sampleable transitions held."""
        return self.replay.num_sampleable

    def size_and_mass(self) -> tuple[int, float, int]:
        """Sampleable transitions held and their priority mass: what the loop plans draws over
        all shards from (a shard's share of every batch is its share of the total mass). The
        process id says which incarnation answered: a restarted shard's answer must not hide
        what its predecessor held."""
        return self.replay.num_sampleable, self.replay.mass, os.getpid()

    def sample(
        self, rows: list[int], beta: float, total_size: int | None = None, share: float = 1.0
    ) -> list[SampleBatch]:
        """This shard's `rows[b]` rows of each batch b, in one call: one message per chunk of
        updates, not per update. `total_size` and `share` place the shard in the logical replay
        (see `PrioritizedReplay.sample`); by default the shard is all of it."""
        self.sampled += sum(rows)
        return [self.replay.sample(count, beta, total_size, share) for count in rows]

    def update_priorities(self, result: UpdateResult) -> None:
        """Apply the update's rows from this shard (it may carry other shards' rows too)."""
        self.replay.update_priorities(result.priority_update)
