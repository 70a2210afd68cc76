"""make_env errors and the built-in maze."""

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distdqn.config import EnvConfig
from distdqn.envs import MAZE_ID, make_env, make_vector_env
from distdqn.envs.maze import (
    DEFAULT_LAYOUT,
    MazeEnv,
    random_layout,
    shortest_path_length,
)
from distdqn.errors import EnvError


@pytest.mark.parametrize("kwargs", [{}, {"observation": "onehot"}, {"layout_seed": 3, "size": 6}])
def test_maze_passes_gymnasium_env_checker(kwargs):
    check_env(MazeEnv(**kwargs), skip_render_check=True)


def test_maze_is_registered_with_a_time_limit():
    env = gym.make(MAZE_ID)
    assert env.spec.max_episode_steps == 200
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 4


def test_maze_walls_block_and_goal_terminates():
    env = MazeEnv(layout=["S#", ".G"], step_reward=-0.5, goal_reward=2.0)
    obs, _ = env.reset()
    assert obs.tolist() == [0.0, 0.0]
    obs, reward, terminated, truncated, _ = env.step(1)  # right: wall
    assert obs.tolist() == [0.0, 0.0] and reward == -0.5 and not terminated
    obs, reward, terminated, _, _ = env.step(0)  # up: off the grid
    assert obs.tolist() == [0.0, 0.0]
    obs, _, _, _, _ = env.step(2)  # down
    assert obs.tolist() == [1.0, 0.0]
    obs, reward, terminated, truncated, _ = env.step(1)  # right: goal
    assert obs.tolist() == [1.0, 1.0] and reward == 2.0 and terminated and not truncated


def test_default_layout_shortest_path_and_random_layouts_are_solvable():
    assert shortest_path_length(DEFAULT_LAYOUT) == 14
    assert shortest_path_length(("S#", "#G")) is None
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert shortest_path_length(random_layout(8, 0.3, rng)) is not None
    assert random_layout(8, 0.3, np.random.default_rng(1)) == random_layout(8, 0.3, np.random.default_rng(1))


def test_bad_layouts_are_rejected():
    with pytest.raises(ValueError, match="exactly one"):
        MazeEnv(layout=["..", ".G"])
    with pytest.raises(ValueError, match="same length"):
        MazeEnv(layout=["S..", ".G"])


def test_unknown_env_id_is_a_clear_error():
    with pytest.raises(EnvError, match="cannot make env 'NoSuchEnv-v0'"):
        make_env(EnvConfig(id="NoSuchEnv-v0"))


def test_continuous_action_space_is_rejected():
    with pytest.raises(EnvError, match="needs Discrete actions"):
        make_env(EnvConfig(id="Pendulum-v1"))


def test_missing_optional_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # as if the atari extra were not installed
    with pytest.raises(EnvError, match="needs the atari extra"):
        make_env(EnvConfig(id="ALE/Pong-v5"))


def test_missing_dependency_of_a_wrapper_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # AtariPreprocessing resizes with OpenCV
    with pytest.raises(EnvError, match="needs a package that is not installed"):
        make_env(EnvConfig(id="ALE/Pong-v5", preprocessing="atari"))


def test_bad_env_kwargs_are_a_clear_error():
    with pytest.raises(EnvError, match="rejected env.kwargs"):
        make_env(EnvConfig(id="CartPole-v1", kwargs={"no_such_argument": 1}))


def test_an_env_error_quoting_huge_kwargs_is_one_short_line():
    """gymnasium repeats the kwargs in its error, and a YAML alias expands them to megabytes: the
    line quoted the whole 4.3 MB."""
    nested = [[list(range(100))] * 100] * 100  # a million numbers, as an alias bomb expands them
    for kwargs in ({"nested": nested}, {"observation": nested}, {"layout": [nested]}):
        with pytest.raises(EnvError, match="rejected env.kwargs") as caught:
            make_env(EnvConfig(id=MAZE_ID, kwargs=kwargs))
        assert len(str(caught.value)) < 500 and "\n" not in str(caught.value)


def test_an_env_that_runs_out_of_memory_is_a_clear_error():
    def too_big(**kwargs):
        return np.empty(2**62, np.uint8)

    gym.register(id="distdqn-test/TooBig-v0", entry_point=too_big)
    try:
        with pytest.raises(
            EnvError, match=r"env 'distdqn-test/TooBig-v0' rejected env.kwargs \{\}: Unable to allocate"
        ):
            make_env(EnvConfig(id="distdqn-test/TooBig-v0"))
    finally:
        del gym.registry["distdqn-test/TooBig-v0"]


def test_vector_env_uses_next_step_autoreset():
    env = make_vector_env(EnvConfig(id=MAZE_ID, kwargs={"layout": ["SG"]}), 2)
    env.reset(seed=0)
    obs, _, terminated, _, _ = env.step(np.array([1, 1]))
    assert terminated.all() and obs[:, 1].tolist() == [1.0, 1.0]  # the final observation
    obs, reward, terminated, _, _ = env.step(np.array([1, 1]))
    assert obs[:, 1].tolist() == [0.0, 0.0] and reward.tolist() == [0.0, 0.0]  # the reset step
