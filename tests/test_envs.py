"""make_env errors and the built-in maze."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from quiet_run import train_quietly

from distdqn.config import EnvConfig
from distdqn.envs import MAZE_ID, make_env, make_vector_env
from distdqn.envs.maze import (
    DEFAULT_LAYOUT,
    MazeEnv,
    random_layout,
    shortest_path_length,
)
from distdqn.errors import EnvError


@pytest.mark.parametrize(
    "kwargs", [{}, {"observation": "coordinates"}, {"layout_seed": 3, "size": 6}, {"size": 5, "wall_fraction": 0.1}]
)
def test_maze_passes_gymnasium_env_checker(kwargs):
    check_env(MazeEnv(**kwargs), skip_render_check=True)


def test_maze_is_registered_with_a_time_limit():
    env = gym.make(MAZE_ID)
    assert env.spec.max_episode_steps == 200
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 4


def test_maze_walls_block_and_goal_terminates():
    env = MazeEnv(layout=["S#", ".G"], observation="coordinates", step_reward=-0.5, goal_reward=2.0)
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


def test_size_and_wall_fraction_take_effect_without_a_layout_seed():
    """They were ignored without `layout_seed` (the 8x8 default layout was used): now any of the
    three draws a random layout, the others at their defaults, and the same arguments always
    give the same layout (actors and evaluator must see one maze)."""
    small = MazeEnv(size=5, wall_fraction=0.1)
    assert small.shape == (5, 5) and small.layout == random_layout(5, 0.1, np.random.default_rng(0))
    assert MazeEnv(size=5, wall_fraction=0.1).layout == small.layout
    assert MazeEnv(size=12).layout == MazeEnv(size=12, wall_fraction=0.25, layout_seed=0).layout
    assert MazeEnv(size=12).shape == (12, 12) and shortest_path_length(MazeEnv(size=12).layout) is not None
    assert MazeEnv(wall_fraction=0.0).layout == ("S.......",) + ("........",) * 6 + (".......G",)
    assert MazeEnv(layout_seed=3).shape == (8, 8) and MazeEnv(layout_seed=3).layout != MazeEnv().layout
    assert MazeEnv().layout == DEFAULT_LAYOUT


def test_the_default_observation_is_the_cell_one_hot():
    """The coordinates (the default before) are not learned by the preset's MLP in its 20k steps:
    a run whose `env.kwargs` replaced the preset's `observation = "onehot"` evaluated -2.0 every time."""
    env = MazeEnv(size=5, wall_fraction=0.1)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.shape == (25,) and observation.tolist() == [1.0] + [0.0] * 24


def test_a_maze_sized_from_the_cli_is_learned(tmp_path: Path):
    """`--set env.kwargs={size: 5, wall_fraction: 0.1}` trained on the 8x8 default layout through
    coordinates and evaluated -2.0 every time; now the 5x5 maze is learned to its shortest path."""
    records = train_quietly(
        MAZE_ID, tmp_path / "run", 3000, "env.kwargs={size: 5, wall_fraction: 0.1}", "evaluation.every_steps=1000"
    )
    moves = shortest_path_length(random_layout(5, 0.1, np.random.default_rng(0)))
    assert moves == 8
    assert [record["eval_return_mean"] for record in records if "eval_return_mean" in record][-1] == pytest.approx(
        1.0 - 0.01 * (moves - 1)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": ["SG"], "size": 5}, r"a maze takes a layout or size \(which draw a random one\), not both"),
        ({"layout": ["SG"], "layout_seed": 1, "wall_fraction": 0.1}, "a layout or wall_fraction, layout_seed"),
        ({"size": 1}, r"an int size in \[2, 256\], got size=1"),
        ({"size": 257}, r"an int size in \[2, 256\], got size=257"),
        ({"size": 10**9}, r"an int size in \[2, 256\], got size=1000000000"),
        ({"size": 6.5}, r"an int size in \[2, 256\], got size=6.5"),
        ({"size": True}, r"an int size in \[2, 256\], got size=True"),
        ({"wall_fraction": 1.0}, "0 <= wall_fraction < 1, got wall_fraction=1.0"),
        ({"wall_fraction": "many"}, "0 <= wall_fraction < 1, got wall_fraction='many'"),
        ({"layout_seed": -1}, "layout_seed must be an int >= 0, got -1"),
        ({"layout": ["S" + "." * 299] * 299 + ["." * 299 + "G"]}, "has 300x300 cells, more than 65,536"),
    ],
)
def test_maze_arguments_that_cannot_be_used_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MazeEnv(**kwargs)


def test_a_huge_bad_value_is_quoted_short():
    with pytest.raises(ValueError, match=r"got wall_fraction=\[0, 0, .*\.\.\.$") as caught:
        MazeEnv(wall_fraction=[0] * 10**6)
    assert len(str(caught.value)) < 200


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
    env = make_vector_env(EnvConfig(id=MAZE_ID, kwargs={"layout": ["SG"], "observation": "coordinates"}), 2)
    env.reset(seed=0)
    obs, _, terminated, _, _ = env.step(np.array([1, 1]))
    assert terminated.all() and obs[:, 1].tolist() == [1.0, 1.0]  # the final observation
    obs, reward, terminated, _, _ = env.step(np.array([1, 1]))
    assert obs[:, 1].tolist() == [0.0, 0.0] and reward.tolist() == [0.0, 0.0]  # the reset step
