"""Actor -> shard -> sample on an env whose every transition is known in advance."""

import numpy as np
import pytest

from distdqn.config import build_config
from distdqn.envs import env_spaces
from distdqn.roles import Actor, ReplayShard


def _config(counter_id, **env):
    return build_config({
        "env": {"id": counter_id, "num_envs": 3, **env},
        "algorithm": {"n_step": 3, "gamma": 0.5, "eps_start": 0.0, "eps_end": 0.0},
        "replay": {"capacity": 300},
        "placement": {"num_shards": 2},
    })


def _fill(config, calls=40, steps=3):
    observation_space, _ = env_spaces(config.env)
    actor = Actor(config, 0)
    shards = [ReplayShard(config, j, observation_space) for j in range(2)]
    for _ in range(calls):
        *batches, taken = actor.collect(steps)
        assert taken <= steps * config.env.num_envs  # autoreset steps are not agent steps
        for j, (shard, batch) in enumerate(zip(shards, batches)):
            assert set((batch.lanes % 2).tolist()) == {j}  # each shard gets only its own lanes
            shard.add(batch)
    return shards


def test_sampled_transitions_are_exact_nstep_transitions(counter_id):
    config = _config(counter_id)  # episodes of 5 steps, terminated
    for shard in _fill(config):
        (batch,) = shard.sample(512, beta=0.4)
        t = batch.observations[:, 0]
        assert set(t.tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}  # the final observation 5 starts nothing
        m = np.minimum(3, 5 - t)  # steps to the bootstrap observation
        assert np.array_equal(batch.next_observations[:, 0], t + m)
        expected_return = sum(np.where(k < m, 0.5**k * (t + 1 + k), 0.0) for k in range(3))
        assert np.allclose(batch.returns, expected_return)
        terminated = t + m == 5
        assert np.allclose(batch.discounts, np.where(terminated, 0.0, 0.5**m))


def test_truncated_episodes_bootstrap_from_their_final_observation(counter_id):
    config = _config(counter_id, max_episode_steps=4, kwargs={"length": 100})
    for shard in _fill(config):
        (batch,) = shard.sample(512, beta=0.4)
        t = batch.observations[:, 0]
        m = np.minimum(3, 4 - t)
        assert np.array_equal(batch.next_observations[:, 0], t + m)
        assert np.allclose(batch.discounts, 0.5**m)  # truncation never zeroes the discount
        expected_return = sum(np.where(k < m, 0.5**k * (t + 1 + k), 0.0) for k in range(3))
        assert np.allclose(batch.returns, expected_return)


def test_every_step_lands_on_its_shard(counter_id):
    config = _config(counter_id)
    shards = _fill(config, calls=10, steps=2)
    # 3 lanes over 2 shards: lanes 0 and 2 on shard 0, lane 1 on shard 1
    assert [shard.inserted for shard in shards] == [40, 20]
    assert sum(shard.size() for shard in shards) > 0
    with pytest.raises(ValueError):
        ReplayShard(build_config({"env": {"id": counter_id, "num_envs": 1}, "placement": {"num_shards": 2}}),
                    1, env_spaces(config.env)[0])


def test_autoreset_steps_are_not_counted_as_agent_steps(counter_id):
    """Episodes of 5 agent steps: 12 vector steps of one env are 2 episodes, each followed by
    gymnasium's autoreset step, which takes no action. Only the 10 agent steps count (for
    total_steps, epsilon and the replay ratio); the autoreset steps are still stored."""
    config = build_config({"env": {"id": counter_id, "num_envs": 1},
                           "algorithm": {"eps_start": 1.0, "eps_end": 0.0, "eps_decay_steps": 100}})
    actor = Actor(config, 0)
    batch, taken = actor.collect(12)
    assert taken == 10 and actor.env_steps == 10
    assert batch.num_steps == 12
    assert actor.current_epsilon() == pytest.approx(0.9)


def test_epsilon_holds_through_the_warm_up_then_decays(counter_id):
    config = build_config({"env": {"id": counter_id, "num_envs": 1},
                           "algorithm": {"eps_start": 1.0, "eps_end": 0.1, "eps_decay_steps": 100,
                                         "eps_decay_start": 50}})
    actor = Actor(config, 0)
    epsilons = []
    for steps in (0, 50, 100, 150, 1000):
        actor.set_progress(steps)
        epsilons.append(actor.current_epsilon())
    assert epsilons == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])
