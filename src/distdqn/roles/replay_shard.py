"""A replay shard: the lanes of the actor environments routed to it, and their priorities.

Lane l (actor i's environment j is lane i * num_envs + j) lives on shard l % num_shards, so each
lane's steps stay in time order on one shard and actors' data spreads evenly over shards.
"""

from __future__ import annotations

import gymnasium as gym

from distdqn.config import Config
from distdqn.replay.buffer import PrioritizedReplay
from distdqn.seeding import stream_seed
from distdqn.types import SampleBatch, TransitionBatch, UpdateResult


class ReplayShard:
    def __init__(self, config: Config, shard_index: int, observation_space: gym.Space) -> None:
        """`observation_space` is one env's single frame: stacks are rebuilt on sample."""
        placement = config.placement
        self.shard_index = shard_index
        self.num_shards = placement.num_shards
        total_lanes = placement.num_actors * config.env.num_envs
        local_lanes = len(range(shard_index, total_lanes, self.num_shards))
        if local_lanes == 0:
            raise ValueError(f"shard {shard_index} gets no lanes: {total_lanes} lanes over {self.num_shards} shards")
        lane_capacity = config.replay.capacity // self.num_shards // local_lanes
        self.replay = PrioritizedReplay(
            num_lanes=local_lanes,
            lane_capacity=lane_capacity,
            obs_shape=observation_space.shape,
            obs_dtype=observation_space.dtype,
            alpha=config.replay.alpha,
            priority_eps=config.replay.priority_eps,
            seed=stream_seed(config.seed, "shard", shard_index),
            frame_stack=config.env.frame_stack,
        )
        self.n_step = config.algorithm.n_step
        self.inserted = 0
        self.sampled = 0

    def add(self, batch: TransitionBatch) -> int:
        """Store this shard's lanes of the batch; return how many steps it kept."""
        batch = batch.for_shard(self.shard_index, self.num_shards)  # a no-op for a batch already split
        local = batch.lanes // self.num_shards
        self.replay.write_steps(local, batch.first_position, batch.observations, batch.actions,
                                batch.episode_starts, self.n_step)
        self.replay.complete(batch.completed_lanes // self.num_shards, batch.completed_positions, batch.returns,
                             batch.discounts, batch.offsets, batch.priorities)
        self.inserted += batch.num_steps
        return batch.num_steps

    def stats(self) -> dict[str, int]:
        return {"inserted": self.inserted, "sampled": self.sampled, "size": self.size()}

    def size(self) -> int:
        """Sampleable transitions held."""
        return self.replay.num_sampleable

    def sample(self, batch_size: int, beta: float, count: int = 1) -> list[SampleBatch]:
        """`count` batches in one call: one message per group of updates, not per update."""
        self.sampled += batch_size * count
        return [self.replay.sample(batch_size, beta) for _ in range(count)]

    def update_priorities(self, result: UpdateResult) -> None:
        self.replay.update_priorities(result.priority_update)
