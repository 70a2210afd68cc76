"""`Config`, the whole tree: its sections and the checks that span them, and the arithmetic of
how replay.capacity splits into shards and lanes, which those checks and the replay shards share."""

from __future__ import annotations

from pydantic import Field, model_validator

from distdqn.config.sections import (
    AlgorithmConfig,
    CheckpointConfig,
    EnvConfig,
    EvaluationConfig,
    LoggingConfig,
    NetworkConfig,
    PlacementConfig,
    ReplayConfig,
    Section,
)


class Config(Section):
    env: EnvConfig = EnvConfig()
    network: NetworkConfig = NetworkConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    replay: ReplayConfig = ReplayConfig()
    placement: PlacementConfig = PlacementConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    seed: int = Field(0, ge=0, lt=2**63)
    """Seeds every random number generator of the run (each role's streams are derived from it,
    see `distdqn.seeding`)."""
    total_steps: int = Field(100_000, ge=1)
    """Env steps to train for (all actors together)."""
    stop_return: float | None = None
    """Stop early at the first evaluation whose mean return reaches this."""

    @model_validator(mode="after")
    def _every_shard_gets_lanes(self) -> Config:
        """Lane l lives on shard l % num_shards: a shard past the last lane would hold nothing (a
        ReplayShard refused it with a traceback once the run had started)."""
        lanes = self.placement.num_actors * self.env.num_envs
        if self.placement.num_shards > lanes:
            raise ValueError(
                f"placement.num_shards={self.placement.num_shards} is more than the {lanes} actor environments "
                f"(placement.num_actors={self.placement.num_actors} x env.num_envs={self.env.num_envs}) "
                "that feed them: a shard without one holds nothing"
            )
        return self

    @model_validator(mode="after")
    def _feature_head_is_whole(self) -> Config:
        """The split head shards one output row per action; a head that scores actions by their
        features has no such rows."""
        if self.network.action_features and self.placement.head_shards > 1:
            raise ValueError(
                f"network.action_features=true needs placement.head_shards=1, got {self.placement.head_shards}: "
                "a head that scores actions by their features has no per-action rows to split "
                "(network.action_features=false gives one output per action, which splits)"
            )
        return self

    @model_validator(mode="after")
    def _capacity_fits_lanes(self) -> Config:
        """Shard 0 holds the most lanes (lane l is on shard l % num_shards), so its lanes are the
        shortest. A lane needs room for a write of `actor_steps_per_call` steps and the n-step
        records still waiting for rewards, twice over, plus the frames before its oldest record's
        that the record's stack is rebuilt from."""
        per_lane = lane_capacity(self, 0)
        algorithm, placement = self.algorithm, self.placement
        needed = 2 * (algorithm.n_step + placement.actor_steps_per_call) + self.env.frame_stack - 1
        if per_lane < needed:
            raise ValueError(
                f"replay.capacity={self.replay.capacity} leaves {per_lane} slots per environment on shard 0 "
                f"(of {placement.num_shards}); at least {needed} are needed"
            )
        return self

    @model_validator(mode="after")
    def _learning_starts_reachable(self) -> Config:
        reachable = reachable_replay_size(self)
        if self.algorithm.learning_starts > reachable:
            raise ValueError(
                f"algorithm.learning_starts={self.algorithm.learning_starts} is never reached: "
                f"replay.capacity={self.replay.capacity} with env.frame_stack={self.env.frame_stack} and "
                f"algorithm.n_step={self.algorithm.n_step} holds at most {reachable} sampleable transitions"
            )
        return self

    @model_validator(mode="after")
    def _batch_fits_replay(self) -> Config:
        """A batch is drawn from the replay; one larger than the replay's capacity is more draws
        than it ever holds transitions (and 10**23 of them ended in NumPy's OverflowError)."""
        if self.algorithm.batch_size > self.replay.capacity:
            raise ValueError(
                f"algorithm.batch_size={self.algorithm.batch_size} is more than replay.capacity="
                f"{self.replay.capacity}, the most transitions a batch can be drawn from"
            )
        return self


def shard_lanes(config: Config, shard: int) -> int:
    """Actor environments (lanes) stored on `shard`: lane l lives on shard l % num_shards."""
    total, shards = config.placement.num_actors * config.env.num_envs, config.placement.num_shards
    return total // shards + (shard < total % shards)  # arithmetic: len(range()) overflows past 2**63


def lane_capacity(config: Config, shard: int) -> int:
    """Slots of each lane on `shard`: its share of replay.capacity split over its lanes. Shards
    with more lanes have shorter lanes when lanes do not divide evenly over shards."""
    return config.replay.capacity // config.placement.num_shards // shard_lanes(config, shard)


def reachable_replay_size(config: Config) -> int:
    """The most sampleable transitions the replay can ever hold, over all shards.

    After each write a lane of C slots holds n_step records that cannot be sampled yet (n_step - 1
    wait for rewards, and the actor holds the completions of its last step until its next call
    brings their bootstrap observation), and its frame_stack - 1 oldest records, whose stacks
    reach into overwritten frames. Final observations of episodes lower it further.
    """
    unsampleable = config.algorithm.n_step + config.env.frame_stack - 1
    shards = config.placement.num_shards
    # shards 0..r-1 hold q + 1 lanes each and the others q: two terms, not a loop over the shards
    q, r = divmod(config.placement.num_actors * config.env.num_envs, shards)
    return sum(
        count * lanes * (config.replay.capacity // shards // lanes - unsampleable)
        for lanes, count in ((q + 1, r), (q, shards - r))
        if lanes and count
    )
