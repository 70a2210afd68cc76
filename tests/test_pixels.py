"""Frames end to end: compact storage rebuilds the stacks the actor saw; training-only clipping
and life loss; the Atari preprocessing; a Pong smoke run."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from distdqn.config import EnvConfig, build_config, resolve_config
from distdqn.envs import env_spaces, make_env, make_vector_env, policy_space
from distdqn.roles import Actor, Evaluator, Learner, ReplayShard


def _config(frames_id, lane_capacity_steps=40, **env):
    return build_config(
        {
            "env": {"id": frames_id, "num_envs": 2, "frame_stack": 4, **env},
            "network": {"torso": "mlp", "hidden_sizes": [8]},
            "algorithm": {
                "n_step": 2,
                "gamma": 0.5,
                "eps_start": 0.0,
                "eps_end": 0.0,
                "learning_starts": 32,
                "batch_size": 32,
            },
            "replay": {"capacity": 2 * lane_capacity_steps},
        }
    )


def _expected_stack(t: np.ndarray) -> np.ndarray:
    """The stack for within-episode step t: frames t-3..t, clamped at the episode's first."""
    return np.maximum(t[:, None] - np.arange(3, -1, -1)[None, :], 0)


def test_stacks_rebuilt_from_single_frames_equal_the_actors_across_episodes_and_wraps(frames_id):
    config = _config(frames_id)  # 7-step episodes, 40 slots per lane: many episode ends and wraps
    frame_space, _ = env_spaces(config.env)
    actor, shard = Actor(config, 0), ReplayShard(config, 0, frame_space)
    unstacked = ReplayShard(
        build_config({**config.model_dump(), "env": {**config.env.model_dump(), "frame_stack": 1}}), 0, frame_space
    )
    assert shard.replay.nbytes == unstacked.replay.nbytes  # one frame per step, whatever the stack depth
    for _ in range(60):
        batch, _ = actor.collect(3)
        assert batch.observations.shape[2:] == (3, 2)  # single frames go to replay
        shard.add(batch)
    (sample,) = shard.sample([512], beta=0.4)
    assert sample.observations.shape == (512, 4, 3, 2) and sample.observations.dtype == np.uint8
    t = sample.observations[:, -1, 0, 0].astype(np.int64)
    assert np.array_equal(sample.observations[:, :, 0, 0], _expected_stack(t))
    following = sample.next_observations[:, -1, 0, 0].astype(np.int64)
    assert np.array_equal(following, np.minimum(t + 2, 7))  # 2-step bootstrap, within the episode
    assert np.array_equal(sample.next_observations[:, :, 0, 0], _expected_stack(following))
    # and the live stack the actor acts on follows the same rule
    live = actor._stacker.stacks[:, :, 0, 0]
    assert np.array_equal(live, _expected_stack(live[:, -1].astype(np.int64)))


@pytest.mark.parametrize("restart_stack", [True, False])
def test_clipping_and_life_loss_shape_learning_only(frames_id, restart_stack: bool):
    config = _config(frames_id, clip_rewards=True, terminal_on_life_loss=True, restart_stack_on_life_loss=restart_stack)
    frame_space, _ = env_spaces(config.env)
    actor, shard = Actor(config, 0), ReplayShard(config, 0, frame_space)
    for _ in range(30):
        shard.add(actor.collect(2)[0])
    (sample,) = shard.sample([512], beta=0.4)
    t = sample.observations[:, -1, 0, 0].astype(np.int64)
    # rewards +5 / -3 become +1 / -1: a 2-step return is 1 - 0.5 or -1 + 0.5
    assert set(np.round(np.abs(sample.returns), 6).tolist()) <= {0.5, 1.0}
    # a life is lost when stepping into t = 3 and t = 6: records ending there do not bootstrap
    life_lost_within = ((t + 1) % 3 == 0) | ((t + 2) % 3 == 0)
    assert np.all(sample.discounts[life_lost_within] == 0.0)
    assert np.all(sample.discounts[~life_lost_within & (t + 2 < 7)] == pytest.approx(0.25))
    # the game went on; a new stack begins at each life (t = 0, 3, 6), as in SB3 and CleanRL, or,
    # with restart_stack_on_life_loss = false, stacks run across the lost life
    life_start = 3 * (t // 3) if restart_stack else np.zeros_like(t)
    assert np.array_equal(sample.observations[:, :, 0, 0], np.maximum(_expected_stack(t), life_start[:, None]))
    live = actor._stacker.stacks[:, :, 0, 0].astype(np.int64)
    newest = live[:, -1]
    live_start = 3 * (newest // 3) if restart_stack else np.zeros_like(newest)
    assert np.array_equal(live, np.maximum(_expected_stack(newest), live_start[:, None]))
    # the actor's episode returns, and the evaluator's, are the raw score
    episode = [5.0, -3.0, 5.0, -3.0, 5.0, -3.0, 5.0]
    assert set(actor.episode_stats()["returns"]) == {sum(episode)}
    learner = Learner(config, policy_space(config.env, frame_space), gym.spaces.Discrete(2))
    result = Evaluator(config.env, config.network, 3).evaluate(learner.weights(), seed=0)
    assert result.returns.tolist() == [sum(episode)] * 3
    assert result.lengths.tolist() == [7] * 3  # lives do not end evaluation episodes


def test_atari_preprocessing_gives_grayscale_84x84_frames_with_max_pooling():
    env = make_env(EnvConfig(id="ALE/Pong-v5", preprocessing="atari"))
    assert env.observation_space.shape == (84, 84) and env.observation_space.dtype == np.uint8
    preprocessing = env
    while not isinstance(preprocessing, gym.wrappers.AtariPreprocessing):
        preprocessing = preprocessing.env
    assert preprocessing.frame_skip == 4 and preprocessing.noop_max == 30
    assert env.unwrapped._frameskip == 1  # the wrapper, not the emulator, skips and max-pools
    assert env.unwrapped.spec.kwargs.get("repeat_action_probability", 0.25) == 0.25  # sticky actions
    observation, _ = env.reset(seed=0)
    for _ in range(30):
        observation, *_ = env.step(env.action_space.sample())
    import cv2

    pooled = np.maximum(preprocessing.obs_buffer[0], preprocessing.obs_buffer[1])
    assert np.array_equal(observation, cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA))
    env.close()


def test_atari_preset_and_networks_fit_stacked_frames():
    config = resolve_config("ALE/Breakout-v5")
    assert config.env.preprocessing == "atari" and config.env.frame_stack == 4 and config.env.clip_rewards
    assert resolve_config("PongNoFrameskip-v4").env.terminal_on_life_loss
    frame_space, action_space = env_spaces(config.env)
    space = policy_space(config.env, frame_space)
    assert space.shape == (4, 84, 84) and space.dtype == np.uint8
    learner = Learner(config, space, action_space)
    convolutions = [m for m in learner.online.modules() if m.__class__.__name__ == "Conv2d"]
    assert [c.out_channels for c in convolutions] == [32, 64, 64]
    assert learner.online.input_scale == pytest.approx(1 / 255)


def test_a_vector_of_atari_envs_steps_together():
    env = make_vector_env(EnvConfig(id="ALE/Pong-v5", preprocessing="atari"), 2)
    frames, infos = env.reset(seed=1)
    assert frames.shape == (2, 84, 84) and infos["lives"].shape == (2,)
    env.close()


def test_pong_smoke_run_through_actors_replay_and_learner(tmp_path: Path, capfd: pytest.CaptureFixture):
    """In this process (a process of its own only started the interpreter again): 1024 env steps,
    learning from 512 at 0.1 updates per step."""
    from distdqn.cli import main

    run_dir = tmp_path / "run"
    settings = [
        "env.num_envs=4",
        "replay.capacity=8192",
        "algorithm.learning_starts=512",
        "algorithm.replay_ratio=0.1",
        "evaluation.every_steps=100000",
        "evaluation.episodes=1",
        "env.max_episode_steps=200",
        "logging.every_steps=512",
        "logging.progress=false",
    ]
    sets = [item for setting in settings for item in ("--set", setting)]
    capfd.readouterr()
    code = main(["train", "--env", "ALE/Pong-v5", "--run-dir", str(run_dir), "--total-steps", "1024", *sets])
    out, err = capfd.readouterr()
    assert code == 0, err[-2000:]
    env_steps = int(out.split(" env steps")[0].split()[-1])
    assert 1024 <= env_steps < 1024 + 64  # the last collect (16 steps of 4 envs) completes
    updates = int(out.split(" updates")[0].split()[-1])
    assert updates > 40  # learning started after 512 steps and took ~0.1 updates per step
    assert (run_dir / "checkpoints" / "latest" / "tensors.safetensors").is_file()


def test_minatar_preset_network_and_a_short_run(tmp_path: Path):
    from distdqn.run.train import train

    config = resolve_config(
        "MinAtar/Breakout-v1",
        overrides=[
            "total_steps=1600",
            "algorithm.learning_starts=400",
            "algorithm.replay_ratio=0.25",
            "evaluation.every_steps=800",
            "evaluation.episodes=2",
            "logging.progress=false",
            "logging.tensorboard=false",
        ],
    )
    frame_space, action_space = env_spaces(config.env)
    assert frame_space.shape == (10, 10, 4) and frame_space.dtype == np.bool_ and action_space.n == 3
    learner = Learner(config, policy_space(config.env, frame_space), action_space)
    convolutions = [m for m in learner.online.modules() if m.__class__.__name__ == "Conv2d"]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convolutions] == [(4, 16, (3, 3))]
    counters = train(config, tmp_path / "run").counters
    per_collect = config.env.num_envs * config.placement.actor_steps_per_call
    assert 1600 <= counters.env_steps < 1600 + per_collect and counters.updates > 250


def test_missing_minatar_is_a_clear_error(monkeypatch):
    from distdqn.errors import EnvError

    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    monkeypatch.delitem(gym.registry, "MinAtar/Asterix-v1", raising=False)
    with pytest.raises(EnvError, match="needs the minatar extra"):
        make_env(EnvConfig(id="MinAtar/Asterix-v1"))


@pytest.mark.parametrize("game", ["Pong", "Breakout"])  # Breakout's ball waits for FIRE: neither backend presses it
def test_envpool_backend_matches_the_ale_py_path(game):
    from distdqn.envs.envpool_backend import EnvPoolVectorEnv

    # one no-op and no sticky actions make both emulators deterministic, so they must agree
    config = EnvConfig(
        id=f"ALE/{game}-v5", preprocessing="atari", noop_max=1, kwargs={"repeat_action_probability": 0.0}
    )
    reference, pool = make_vector_env(config, 1), make_vector_env(config.model_copy(update={"backend": "envpool"}), 1)
    assert isinstance(pool, EnvPoolVectorEnv)
    assert pool.single_observation_space == reference.single_observation_space
    assert pool.single_action_space == reference.single_action_space
    frames_a, info_a = reference.reset(seed=0)
    frames_b, info_b = pool.reset(seed=0)
    assert frames_a.shape == frames_b.shape == (1, 84, 84) and frames_b.dtype == np.uint8
    assert "lives" in info_b
    assert np.abs(frames_a.astype(int) - frames_b).mean() < 0.05
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(600):
        actions = rng.integers(pool.single_action_space.n, size=1)
        frames_a, reward_a, terminated_a, truncated_a, _ = reference.step(actions)
        frames_b, reward_b, terminated_b, truncated_b, _ = pool.step(actions)
        assert (reward_a[0], terminated_a[0], truncated_a[0]) == (reward_b[0], terminated_b[0], truncated_b[0])
        differences.append(np.abs(frames_a.astype(int) - frames_b).mean())
    assert np.mean(differences) < 0.05  # area resizes agree to within rounding
    reference.close()
    pool.close()


def test_envpool_takes_the_ale_options_of_the_ale_py_path():
    from distdqn.errors import EnvError

    # all 18 actions, and ale-py's frame limit (40 frames: 10 agent steps) below env.max_episode_steps
    config = EnvConfig(
        id="BreakoutNoFrameskip-v4",
        preprocessing="atari",
        noop_max=1,
        max_episode_steps=100,
        kwargs={"full_action_space": True, "max_num_frames_per_episode": 40},
    )
    reference, pool = make_vector_env(config, 1), make_vector_env(config.model_copy(update={"backend": "envpool"}), 1)
    assert pool.single_action_space == reference.single_action_space == gym.spaces.Discrete(18)
    reference.reset(seed=0)
    pool.reset(seed=0)
    truncations = []
    for action in [17] * 11:  # DOWNLEFTFIRE, an action only the full set has
        frames_a, _, _, truncated_a, _ = reference.step(np.array([action]))
        frames_b, _, _, truncated_b, _ = pool.step(np.array([action]))
        truncations.append((truncated_a[0], truncated_b[0]))
        if not truncated_a[0]:  # ale-py's frame count includes the no-op, so its last step is a frame short
            assert np.abs(frames_a.astype(int) - frames_b).mean() < 0.05
    assert truncations == [(False, False)] * 9 + [(True, True), (False, False)]
    reference.close()
    pool.close()
    with pytest.raises(EnvError, match=r"no counterpart for env.kwargs \['obs_type'\]"):
        make_vector_env(config.model_copy(update={"backend": "envpool", "kwargs": {"obs_type": "ram"}}), 1)


def test_envpool_truncates_then_resets_on_the_next_step_like_gymnasium():
    config = EnvConfig(id="ALE/Pong-v5", preprocessing="atari", backend="envpool", max_episode_steps=5)
    pool = make_vector_env(config, 2)
    pool.reset(seed=3)
    for _ in range(4):
        _, _, _, truncated, _ = pool.step(np.zeros(2, np.int64))
        assert not truncated.any()
    _, _, _, truncated, _ = pool.step(np.zeros(2, np.int64))
    assert truncated.all()
    _, rewards, terminated, truncated, _ = pool.step(np.zeros(2, np.int64))  # the reset step
    assert rewards.tolist() == [0.0, 0.0] and not (terminated | truncated).any()
    pool.close()


def test_actor_collects_from_envpool():
    config = resolve_config(
        "ALE/Pong-v5",
        overrides=["env.backend=envpool", "env.num_envs=2", "replay.capacity=4000", "algorithm.learning_starts=100"],
    )
    frame_space, _ = env_spaces(config.env)
    actor, shard = Actor(config, 0), ReplayShard(config, 0, frame_space)
    for _ in range(8):
        batch, steps = actor.collect(4)
        shard.add(batch)
    assert steps == 8 and batch.observations.shape == (2, 4, 84, 84)
    (sample,) = shard.sample([8], beta=0.4)
    assert sample.observations.shape == (8, 4, 84, 84)
    with pytest.raises(Exception, match="noop_max >= 1"):
        EnvConfig(id="ALE/Pong-v5", preprocessing="atari", backend="envpool", noop_max=0)
