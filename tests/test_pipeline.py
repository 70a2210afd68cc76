"""Actor -> shard -> sample on an env whose every transition is known in advance."""

import numpy as np
import pytest

from distdqn.config import build_config, reachable_replay_size
from distdqn.envs import env_spaces
from distdqn.errors import ConfigError
from distdqn.roles import Actor, ReplayShard
from distdqn.roles.learner import merge_shard_rows
from distdqn.run.updates import plan_rows


def _config(counter_id, **env):
    return build_config(
        {
            "env": {"id": counter_id, "num_envs": 3, **env},
            "algorithm": {"n_step": 3, "gamma": 0.5, "eps_start": 0.0, "eps_end": 0.0, "learning_starts": 50},
            "replay": {"capacity": 300},
            "placement": {"num_shards": 2},
        }
    )


def _fill(config, calls=40, steps=3):
    observation_space, _ = env_spaces(config.env)
    actor = Actor(config, 0)
    shards = [ReplayShard(config, j, observation_space) for j in range(2)]
    for _ in range(calls):
        *batches, taken = actor.collect(steps)
        assert taken <= steps * config.env.num_envs  # autoreset steps are not agent steps
        for j, (shard, batch) in enumerate(zip(shards, batches, strict=True)):
            assert set((batch.lanes % 2).tolist()) == {j}  # each shard gets only its own lanes
            shard.add(batch)
    return shards


def test_sampled_transitions_are_exact_nstep_transitions(counter_id):
    config = _config(counter_id)  # episodes of 5 steps, terminated
    for shard in _fill(config):
        (batch,) = shard.sample([512], beta=0.4)
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
        (batch,) = shard.sample([512], beta=0.4)
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
    with pytest.raises(ConfigError, match="a shard without one holds nothing"):
        build_config({"env": {"id": counter_id, "num_envs": 1}, "placement": {"num_shards": 2}})


def test_autoreset_steps_are_not_counted_as_agent_steps(counter_id):
    """Episodes of 5 agent steps: 12 vector steps of one env are 2 episodes, each followed by
    gymnasium's autoreset step, which takes no action. Only the 10 agent steps count (for
    total_steps, epsilon and the replay ratio); the autoreset steps are still stored."""
    config = build_config(
        {
            "env": {"id": counter_id, "num_envs": 1},
            "algorithm": {"eps_start": 1.0, "eps_end": 0.0, "eps_decay_steps": 100},
        }
    )
    actor = Actor(config, 0)
    batch, taken = actor.collect(12)
    assert taken == 10 and actor.env_steps == 10
    assert batch.num_steps == 12
    assert actor.current_epsilon() == pytest.approx(0.9)


def test_epsilon_holds_through_the_warm_up_then_decays(counter_id):
    config = build_config(
        {
            "env": {"id": counter_id, "num_envs": 1},
            "algorithm": {"eps_start": 1.0, "eps_end": 0.1, "eps_decay_steps": 100, "eps_decay_start": 50},
        }
    )
    actor = Actor(config, 0)
    epsilons = []
    for steps in (0, 50, 100, 150, 1000):
        actor.set_progress(steps)
        epsilons.append(actor.current_epsilon())
    assert epsilons == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])


@pytest.mark.parametrize("steps_per_call", [1, 2, 5])
def test_replay_fills_to_exactly_the_size_the_config_check_allows(frames_id, steps_per_call):
    """3 lanes over 2 shards (lanes of 30 and 60 slots), stacks of 4, 3-step returns: once the
    lanes wrap, each holds its capacity less 3 pending records and its 3 oldest, whatever the
    steps per collect; learning_starts above that is refused, because it would never be reached."""
    data = {
        "env": {"id": frames_id, "num_envs": 3, "frame_stack": 4, "kwargs": {"length": 250}},
        "network": {"torso": "mlp", "hidden_sizes": [8]},
        "algorithm": {"n_step": 3, "eps_start": 0.0, "eps_end": 0.0, "learning_starts": 102, "batch_size": 64},
        "replay": {"capacity": 120},
        "placement": {"num_shards": 2, "actor_steps_per_call": steps_per_call},
    }
    config = build_config(data)
    assert reachable_replay_size(config) == 2 * (30 - 6) + (60 - 6)
    observation_space, _ = env_spaces(config.env)
    actor = Actor(config, 0)
    shards = [ReplayShard(config, j, observation_space) for j in range(2)]
    for _ in range(100 // steps_per_call):
        for shard, batch in zip(shards, actor.collect(steps_per_call)[:-1], strict=True):
            shard.add(batch)
    assert sum(shard.size() for shard in shards) == 102
    with pytest.raises(ConfigError, match="learning_starts=103 is never reached"):
        build_config({**data, "algorithm": {**data["algorithm"], "learning_starts": 103}})


def _keys(lanes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One number per transition: its lane and its stream position."""
    return lanes * 100_000 + positions


def test_sharded_replay_samples_as_one_buffer(counter_id):
    """3 lanes over 2 shards (two lanes on shard 0, one on shard 1) against one buffer holding the
    same transitions with the same priorities: the loop's plan (rows per shard from a multinomial
    over shard masses), the shards' draws and the learner's merge give every transition the
    probability one buffer gives it, and importance weights (N P) ** -beta over the batch's max."""

    def config(num_shards: int):
        return build_config(
            {
                "env": {"id": counter_id, "num_envs": 3},
                "algorithm": {"learning_starts": 0},
                "replay": {"capacity": 1200, "alpha": 0.6},
                "placement": {"num_shards": num_shards},
            }
        )

    sharded, single = config(2), config(1)
    space, _ = env_spaces(single.env)
    actor, whole = Actor(single, 0), ReplayShard(single, 0, space)
    shards = [ReplayShard(sharded, j, space) for j in range(2)]
    for _ in range(20):  # 60 steps a lane: nothing wraps, so both hold the same transitions
        batch, _ = actor.collect(3)
        for replay in (whole, *shards):
            replay.add(batch)
    sizes, masses, _ = zip(*(shard.size_and_mass() for shard in shards), strict=True)
    assert sizes[0] == 2 * sizes[1] and sum(sizes) == whole.size()
    slots = np.flatnonzero(whole.replay._sampleable)
    order = np.argsort(_keys(slots // whole.replay.lane_capacity, whole.replay._positions[slots]))
    keys = _keys(slots // whole.replay.lane_capacity, whole.replay._positions[slots])[order]
    probabilities = whole.replay._tree.values(slots)[order] / whole.replay.mass

    rows = plan_rows(np.random.default_rng(0), list(masses), 64, 600)
    parts = [
        shard.sample(rows[:, j].tolist(), 0.7, sum(sizes), masses[j] / sum(masses)) for j, shard in enumerate(shards)
    ]
    counts = np.zeros(len(keys))
    for batch in (merge_shard_rows(batch_parts) for batch_parts in zip(*parts, strict=True)):
        lanes = batch.indices // np.array([s.replay.lane_capacity for s in shards])[batch.shards] * 2 + batch.shards
        drawn = np.searchsorted(keys, _keys(lanes, batch.stamps))
        assert np.array_equal(keys[drawn], _keys(lanes, batch.stamps))
        np.add.at(counts, drawn, 1)
        weights = (len(keys) * probabilities[drawn]) ** -0.7
        np.testing.assert_allclose(batch.weights, weights / weights.max(), rtol=1e-5)
    expected = probabilities * counts.sum()
    chi_square = ((counts - expected) ** 2 / expected).sum()
    df = len(keys) - 1  # Wilson-Hilferty: the chi-square quantile at p = 0.001 (z = 3.09)
    assert chi_square < df * (1 - 2 / (9 * df) + 3.09 * np.sqrt(2 / (9 * df))) ** 3
