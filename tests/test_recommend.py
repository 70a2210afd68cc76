"""The recommendation env `distdqn/Recommend-v0`, its baselines and its preset."""

import re
import tracemalloc
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from quiet_run import train_quietly

from distdqn.cli import main
from distdqn.config import preset_for
from distdqn.envs import RECOMMEND_ID
from distdqn.envs.item_space import ItemSpace
from distdqn.envs.recommend import RecommendEnv
from distdqn.envs.recommend_baselines import MyopicRecommender, RandomRecommender, play_episode

CATALOG = ("item_topic", "item_quality", "item_appeal", "item_clickbait")


def test_passes_gymnasium_env_checker():
    check_env(RecommendEnv(), skip_render_check=True)
    check_env(RecommendEnv(num_items=7, num_topics=3, history_length=1), skip_render_check=True)
    check_env(gym.make(RECOMMEND_ID).unwrapped, skip_render_check=True)


def _episode(env: gym.Env, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of one episode of a fixed-seed random recommender."""
    recommender = RandomRecommender(env.unwrapped.num_items, seed=0)
    observation, _ = env.reset(seed=seed)
    observations, rewards, done = [observation], [], False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(recommender.act(observation))
        observations.append(observation)
        rewards.append(reward)
        done = terminated or truncated
    return np.array(observations), np.array(rewards)


def test_episodes_are_reproducible_by_seed():
    env = gym.make(RECOMMEND_ID)
    first_obs, first_rewards = _episode(env, seed=3)
    again_obs, again_rewards = _episode(env, seed=3)
    np.testing.assert_array_equal(first_obs, again_obs)
    np.testing.assert_array_equal(first_rewards, again_rewards)
    other_obs, other_rewards = _episode(env, seed=4)
    assert len(other_rewards) != len(first_rewards) or not np.array_equal(other_rewards, first_rewards)


def test_catalog_is_fixed_by_catalog_seed_not_by_episode_seed():
    env = RecommendEnv(num_items=500)
    catalog = {name: getattr(env, name).copy() for name in CATALOG}
    for seed in (0, 1):
        env.reset(seed=seed)
        env.step(0)
        for name in CATALOG:
            np.testing.assert_array_equal(getattr(env, name), catalog[name])
    same, other = RecommendEnv(num_items=500), RecommendEnv(num_items=500, catalog_seed=1)
    for name in CATALOG:
        np.testing.assert_array_equal(getattr(same, name), catalog[name])
    assert not np.array_equal(other.item_quality, catalog["item_quality"])
    assert 0.05 < env.item_clickbait.mean() < 0.15  # the default clickbait_fraction is 0.1
    assert (env.item_quality[env.item_clickbait] < 0).all() and (env.item_appeal[env.item_clickbait] > 1).all()


def test_observation_is_the_log_never_the_latent_user():
    env = RecommendEnv(num_topics=4, history_length=2)
    assert env.observation_space.shape == (2 * 4 + 2 * (4 + 2) + 1,)
    first, _ = env.reset(seed=1)
    interests = env.interests.copy()
    second, _ = env.reset(seed=2)
    assert not np.array_equal(env.interests, interests)
    np.testing.assert_array_equal(first, second)  # other users, the same (empty) log
    expected = np.zeros(env.observation_space.shape, np.float32)
    expected[-1] = 1.0  # the whole budget is left
    np.testing.assert_array_equal(first, expected)

    observation, reward, *_ = env.step(0)
    env.interests[:] = -env.interests
    np.testing.assert_array_equal(env._observation(), observation)
    topic = env.item_topic[0]
    recent = observation[8 : 8 + 6]  # the newest recommendation: topic one-hot, clicked, engagement
    np.testing.assert_array_equal(recent[:4], np.eye(4)[topic])
    assert recent[4] == float(reward > 0)
    assert recent[5] == pytest.approx(reward / (reward + 3.0))
    assert observation[topic] + observation[4 + topic] == pytest.approx(1 / (1 + 3.0))  # one click or one skip


def test_a_million_items_cost_only_the_catalog():
    """The catalog is the only O(num_items) memory, and stepping allocates nothing of that size."""
    num_items = 1_000_000
    env = RecommendEnv(num_items=num_items)
    assert isinstance(env.action_space, ItemSpace) and env.action_space.n == num_items
    arrays = {name: value for name, value in vars(env).items() if isinstance(value, np.ndarray)}
    assert {name for name, value in arrays.items() if value.size >= num_items} == set(CATALOG)
    assert sum(arrays[name].nbytes for name in CATALOG) <= 13 * num_items
    assert env.action_space.features.nbytes == 4 * 22 * num_items  # 20 topics, quality, appeal
    assert all(value.size < 1000 for name, value in arrays.items() if name not in CATALOG)

    myopic = MyopicRecommender(env)
    assert len(myopic.candidates) < 2000  # a Pareto front per topic, not the catalog
    env.reset(seed=0)
    tracemalloc.start()
    try:
        for step in range(200):
            action = myopic.act(np.empty(0)) if step % 2 else step * 4999
            *_, terminated, _, _ = env.step(action)
            if terminated:
                env.reset()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # one catalog-sized temporary would be at least 1 MB


def test_myopic_picks_the_best_immediate_item():
    env = RecommendEnv(num_items=3000, clickbait_fraction=0.3)
    myopic = MyopicRecommender(env)
    everything = np.arange(env.num_items)
    for seed in range(20):
        env.reset(seed=seed)
        expected = env.expected_engagement(everything)
        assert expected[myopic.act(np.empty(0))] == expected.max()


def test_myopic_beats_random_on_immediate_reward():
    env = gym.make(RECOMMEND_ID)
    per_step = {}
    for name, recommender in (("random", RandomRecommender(1000, seed=0)), ("myopic", MyopicRecommender(env))):
        episodes = [play_episode(env, recommender, seed) for seed in range(5)]
        per_step[name] = sum(total for total, _ in episodes) / sum(length for _, length in episodes)
    # measured: random 2.1, myopic 8.0 engagement per step
    assert per_step["myopic"] > 2 * per_step["random"] > 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_items": 0}, "num_items must be an int >= 1"),
        ({"num_items": 2.5}, "num_items must be an int >= 1"),
        ({"num_topics": True}, "num_topics must be an int >= 1"),
        ({"clickbait_fraction": 1.5}, "clickbait_fraction must be a number in [0, 1]"),
        ({"session_budget": float("inf")}, "session_budget must be a finite number > 0"),
        ({"catalog_seed": -1}, "catalog_seed must be an int >= 0"),
        ({"history_length": 0}, "history_length must be an int >= 1"),
        ({"skip_time": 0}, "skip_time must be a finite number > 0"),
        ({"quality_budget_gain": 1.0}, "quality_budget_gain must be a number in [0, 1)"),
        ({"interest_drift": -0.1}, "interest_drift must be a number in [0, 1]"),
        ({"engagement_noise": "loud"}, "engagement_noise must be a finite number >= 0"),
    ],
)
def test_bad_kwargs_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RecommendEnv(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_items": 10**11}, r"num_items=100000000000 and observations of 151 values .* need 19,464.6 GiB"),
        ({"num_items": 10**12}, r"num_items=1000000000000 and observations of 151 values .* need 194,646.4 GiB"),
        (
            {"num_topics": 10**6, "history_length": 10**6},
            r"observations of 1,000,004,000,001 values .* need 29,809.9 GiB",
        ),
    ],
)
def test_an_env_larger_than_memory_is_refused_before_allocating(eight_gib, kwargs, message):
    """A num_items of 10**10 ended in NumPy's allocation traceback (10**8 in torch's, for the
    Q-head: see test_networks). The sizes here are beyond any machine's memory, so that code
    without the check fails at once instead of filling this one."""
    tracemalloc.start()
    try:
        drawn = r" \(\d+ bytes an item while the catalog and its features are drawn, 32 an "
        with pytest.raises(ValueError, match=message + drawn):
            RecommendEnv(**kwargs)
        assert tracemalloc.get_traced_memory()[1] < 100_000
    finally:
        tracemalloc.stop()
    RecommendEnv(num_items=10**6)  # 209 MB: fits


def test_an_env_larger_than_memory_is_one_line_from_the_cli(tmp_path: Path, capsys, eight_gib):
    run_dir = tmp_path / "run"
    code = main(
        ["train", "--env", RECOMMEND_ID, "--set", "env.kwargs={num_items: 1000000000000}", "--run-dir", str(run_dir)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not run_dir.exists()
    assert err.startswith(
        "distdqn: error: env 'distdqn/Recommend-v0' rejected env.kwargs {'num_items': 1000000000000}: "
        "num_items=1000000000000 and observations of 151 values (num_topics=20, history_length=5) need 194,646.4 GiB"
    )
    assert err.endswith("; this machine has 8.0 GiB")


def test_a_huge_bad_value_is_quoted_short():
    with pytest.raises(ValueError, match=r"num_items must be an int >= 1, got \[0, 0, .*\.\.\.$") as caught:
        RecommendEnv(num_items=[0] * 10**6)
    assert len(str(caught.value)) < 200


def test_the_action_space_publishes_each_items_topic_quality_and_appeal():
    """What `network.action_features` scores items by: a catalog's metadata, never the user."""
    env = RecommendEnv(num_items=500, num_topics=7)
    features = env.action_space.features
    assert features.shape == (500, 9) and features.dtype == np.float32
    np.testing.assert_array_equal(features[:, :7].argmax(axis=1), env.item_topic)
    np.testing.assert_array_equal(features[:, :7].sum(axis=1), np.ones(500))
    np.testing.assert_array_equal(features[:, 7], env.item_quality)
    np.testing.assert_array_equal(features[:, 8], env.item_appeal)
    assert not features.flags.writeable
    env.reset(seed=0)
    env.step(3)
    np.testing.assert_array_equal(env.action_space.features, features)  # the user's session changes nothing


def test_invalid_item_is_refused():
    env = RecommendEnv(num_items=10)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid item 10"):
        env.step(10)


def test_preset_trains_from_the_cli(tmp_path: Path):
    assert preset_for(RECOMMEND_ID)["env"]["id"] == RECOMMEND_ID
    run_dir = tmp_path / "run"
    records = train_quietly(
        RECOMMEND_ID,
        run_dir,
        600,
        "algorithm.learning_starts=200",
        "evaluation.every_steps=300",
        "evaluation.episodes=2",
    )
    evaluations = [record["eval_return_mean"] for record in records if "eval_return_mean" in record]
    assert evaluations and all(np.isfinite(evaluations))
