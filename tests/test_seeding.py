"""Every random stream of a run has its own seed: no role shares one with another, within a
run or across runs of neighbouring seeds."""

import numpy as np

from distdqn.config import resolve_config
from distdqn.seeding import env_seeds, role_rng, stream_seed


def test_no_two_streams_collide_within_or_across_run_seeds():
    seeds = []
    for run_seed in range(3):
        for actor in range(200):  # the old scheme gave actor 100 of seed s the streams of actor 0 of s + 1
            seeds += env_seeds(run_seed, "actor", actor, 4)
        seeds += [stream_seed(run_seed, "shard", j) for j in range(16)]
        seeds += [stream_seed(run_seed, "learner", 0)]
        seeds += [stream_seed(run_seed, "evaluator", 1, steps) for steps in range(0, 100_000, 1000)]
        seeds += env_seeds(run_seed, "evaluator", 0, 10)  # ... and the evaluator's envs those of actor 90
    assert len(set(seeds)) == len(seeds)


def test_role_generators_are_reproducible_and_distinct():
    first = role_rng(7, "actor", 3).random(4)
    assert np.array_equal(first, role_rng(7, "actor", 3).random(4))
    assert not np.array_equal(first, role_rng(7, "actor", 4).random(4))
    assert not np.array_equal(first, role_rng(8, "actor", 3).random(4))


def test_seed_must_fit_the_streams():
    import pytest

    from distdqn.errors import ConfigError

    for bad in ("-1", str(2**70)):
        with pytest.raises(ConfigError, match="seed"):
            resolve_config("CartPole-v1", overrides=[f"seed={bad}"])
