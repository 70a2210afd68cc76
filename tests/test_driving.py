"""highway-env (the `driving` extra): the highway-fast-v0 preset, a short run of it, and the
one-line error when the extra is not installed."""

import sys
from pathlib import Path

import gymnasium as gym
import pytest
from quiet_run import train_quietly

from distdqn.cli import main
from distdqn.config import EnvConfig, resolve_config
from distdqn.envs import env_spaces, is_highway_id, make_env
from distdqn.errors import EnvError

HIGHWAY_FAST = "highway-fast-v0"


def test_preset_maps_the_published_sb3_script():
    config = resolve_config(HIGHWAY_FAST)
    assert config.env.id == HIGHWAY_FAST and config.env.num_envs == 1 and config.env.kwargs == {}
    assert config.env.max_episode_steps is None  # the env's own duration ends episodes
    assert config.network.hidden_sizes == (256, 256) and not config.network.dueling
    algorithm = config.algorithm
    assert (algorithm.lr, algorithm.gamma, algorithm.batch_size, algorithm.learning_starts) == (5e-4, 0.8, 32, 200)
    assert (algorithm.replay_ratio, algorithm.target_update_interval, algorithm.n_step) == (1.0, 50, 1)
    assert not algorithm.double_dqn and algorithm.lr_end is None
    assert (algorithm.eps_start, algorithm.eps_end, algorithm.eps_decay_steps) == (1.0, 0.05, 2000)
    assert config.replay.capacity == 15000 and config.replay.alpha == 0.0
    assert config.total_steps == 20000 and config.evaluation.every_steps == 2000


@pytest.mark.parametrize(
    ("env_id", "highway"),
    [("highway-fast-v0", True), ("roundabout-v1", True), ("CartPole-v1", False), ("MinAtar/highway-v0", False)],
)
def test_highway_ids_are_told_by_name(env_id: str, highway: bool):
    assert is_highway_id(env_id) is highway
    assert not is_highway_id("not an id!")


def test_a_short_run_of_the_preset_writes_metrics_and_a_checkpoint(tmp_path: Path):
    pytest.importorskip("highway_env")
    frame_space, action_space = env_spaces(EnvConfig(id=HIGHWAY_FAST))
    assert frame_space.shape == (5, 5) and action_space == gym.spaces.Discrete(5)  # Kinematics, meta-actions
    run_dir = tmp_path / "run"
    lines = train_quietly(HIGHWAY_FAST, run_dir, 150, "evaluation.episodes=1", "algorithm.learning_starts=100")
    assert any("eval_return_mean" in line for line in lines)
    assert lines[-1]["env_steps"] == 150 and lines[-1]["updates"] > 0
    assert (run_dir / "checkpoints" / "latest" / "tensors.safetensors").is_file()


def test_missing_highway_env_is_a_clear_error(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setitem(sys.modules, "highway_env", None)  # as if the driving extra were not installed
    monkeypatch.delitem(gym.registry, HIGHWAY_FAST, raising=False)
    with pytest.raises(EnvError, match=r"needs the driving extra: pip install 'distdqn\[driving\]'"):
        make_env(EnvConfig(id=HIGHWAY_FAST))
    code = main(["train", "--env", HIGHWAY_FAST, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "needs the driving extra" in err, err
    assert not (tmp_path / "run").exists()
