"""`distdqn play`: greedy episodes, the GIF of their frames, the maze's value map, bad input; and
the maze's rgb_array rendering. Checkpoints hold untrained (or hand-set) networks: nothing trains."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from PIL import Image, ImageSequence

from distdqn.cli import main
from distdqn.config import Config, config_to_toml, resolve_config
from distdqn.envs import MAZE_ID, env_spaces, frame_box, policy_space
from distdqn.envs.maze import AGENT_RGB, CELL_PIXELS, DEFAULT_LAYOUT, FLOOR_RGB, GOAL_RGB, WALL_RGB, MazeEnv
from distdqn.envs.maze_map import map_pixel_size, plot_value_map, value_grid
from distdqn.networks import QNetwork, build_q_network
from distdqn.seeding import EVAL_SEED
from distdqn.storage.checkpoint import save_checkpoint
from distdqn.tools import play as play_module
from distdqn.tools.play import GifFrames


def with_env(config: Config, **changes) -> Config:
    return config.model_copy(update={"env": config.env.model_copy(update=changes)})


def save_policy(
    directory: Path, config: Config, always: int | None = None, name: str = "latest"
) -> tuple[Path, QNetwork]:
    """A checkpoint `name` of a fresh network for `config` (seeded); `always`: one whose greedy
    action is that action in every state (zero output weights, a bias for it)."""
    torch.manual_seed(0)
    observation_space, action_space = env_spaces(config.env)
    network = build_q_network(config.network, policy_space(config.env, frame_box(observation_space)), action_space)
    if always is not None:
        with torch.no_grad():
            network.head.weight.zero_()
            network.head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(always), action_space.n) * 5.0)
    network.requires_grad_(False)
    tensors = {f"online.{name}": value for name, value in network.state_dict().items()}
    return save_checkpoint(directory / "checkpoints", name, config, tensors, {}), network


@pytest.fixture(scope="module")
def maze_checkpoint(tmp_path_factory) -> tuple[Path, QNetwork]:
    return save_policy(tmp_path_factory.mktemp("maze"), resolve_config(MAZE_ID))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def episode_lengths(out: str) -> list[int]:
    return [int(length) for length in re.findall(r"^episode \d+: return \S+, length (\d+)", out, re.MULTILINE)]


# the maze's rendering


def cell_pixel(frame: np.ndarray, row: int, col: int) -> tuple[int, ...]:
    """The colour at the centre of a cell."""
    centre = CELL_PIXELS // 2
    return tuple(int(value) for value in frame[row * CELL_PIXELS + centre, col * CELL_PIXELS + centre])


def test_maze_renders_rgb_frames():
    env = MazeEnv(layout=["S#", ".G"], render_mode="rgb_array")
    env.reset()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (2 * CELL_PIXELS, 2 * CELL_PIXELS, 3)
    assert frame.dtype == np.uint8
    assert cell_pixel(frame, 0, 0) == AGENT_RGB
    assert tuple(frame[0, 0]) == FLOOR_RGB  # the agent is a square inside its cell
    assert cell_pixel(frame, 0, 1) == WALL_RGB
    assert cell_pixel(frame, 1, 0) == FLOOR_RGB
    assert cell_pixel(frame, 1, 1) == GOAL_RGB
    env.step(2)
    env.step(1)  # down, right: on the goal
    frame = env.render()
    assert cell_pixel(frame, 1, 1) == AGENT_RGB and tuple(frame[-1, -1]) == GOAL_RGB
    assert cell_pixel(frame, 0, 0) == FLOOR_RGB


def test_maze_keeps_ansi_and_passes_the_render_checks():
    env = MazeEnv(layout=["S#", ".G"], render_mode="ansi")
    env.reset()
    assert env.render() == "A#\n.G"
    check_env(gym.make(MAZE_ID, render_mode="rgb_array").unwrapped)


@pytest.mark.parametrize("observation", ["coordinates", "onehot"])
def test_observation_at_is_what_the_maze_emits_there(observation):
    env = MazeEnv(layout=["S..", "#.G"], observation=observation)
    emitted, _ = env.reset()
    assert np.array_equal(env.observation_at(0, 0), emitted)
    for action, cell in [(1, (0, 1)), (2, (1, 1))]:
        emitted, *_ = env.step(action)
        assert np.array_equal(env.observation_at(*cell), emitted)
    for wall_or_outside in [(1, 0), (2, 0), (0, -1)]:
        with pytest.raises(ValueError, match="no free cell"):
            env.observation_at(*wall_or_outside)


# episodes and the GIF


def test_play_writes_a_gif_of_every_frame_and_the_maze_map(tmp_path, capsys, maze_checkpoint):
    checkpoint, _ = maze_checkpoint
    gif = tmp_path / "maze.gif"
    code, out, err = run(
        capsys, "play", str(checkpoint), "--episodes", "2", "--max-steps", "9", "--fps", "10", "--gif", str(gif)
    )
    assert code == 0, err
    lengths = episode_lengths(out)
    assert len(lengths) == 2 and all(1 <= length <= 9 for length in lengths)
    frames = sum(lengths) + len(lengths)  # a frame after each reset and after each step
    assert f"wrote {gif}: {frames} frames of 128x128, 100 ms each" in out
    with Image.open(gif) as image:
        assert image.size == (len(DEFAULT_LAYOUT[0]) * CELL_PIXELS, len(DEFAULT_LAYOUT) * CELL_PIXELS)
        assert image.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        # Pillow merges repeated frames (a bump into a wall) into longer ones: the time shown is exact
        assert sum(durations) == frames * 100 and len(durations) <= frames
        image.seek(0)
        first = np.asarray(image.convert("RGB"))
    start = MazeEnv(render_mode="rgb_array")
    start.reset()
    assert np.array_equal(first, start.render())
    map_png = tmp_path / "maze-map.png"  # next to the GIF by default
    assert f"wrote {map_png}: value map of the 8x8 maze" in out
    with Image.open(map_png) as image:
        assert image.format == "PNG" and image.size == map_pixel_size((8, 8))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["maze-map.png", "maze.gif"]  # no temporary left


def test_an_episode_that_reaches_the_goal(tmp_path, capsys):
    config = with_env(resolve_config(MAZE_ID), kwargs={"layout": ["S.G"], "step_reward": -0.25})
    checkpoint, _ = save_policy(tmp_path, config, always=1)  # always right
    gif = tmp_path / "goal.gif"
    code, out, err = run(capsys, "play", str(checkpoint), "--gif", str(gif), "--map", str(tmp_path / "m.png"))
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "episode 1: return 0.75, length 2",
        f"{MAZE_ID}: mean return 0.75 over 1 episodes (mean length 2.0)",
    ]
    with Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (3 * CELL_PIXELS, CELL_PIXELS)  # each step moves the agent
        image.seek(2)
        assert cell_pixel(np.asarray(image.convert("RGB")), 0, 2) == AGENT_RGB
    assert not (tmp_path / "goal-map.png").exists()  # --map named the map's place
    with Image.open(tmp_path / "m.png") as image:
        assert image.size == map_pixel_size((1, 3))


def test_play_plays_the_episodes_evaluate_scores(tmp_path, capsys):
    checkpoint, _ = save_policy(tmp_path, resolve_config("CartPole-v1"))
    code, out, err = run(capsys, "play", str(checkpoint), "--episodes", "3", "--seed", "5")
    assert code == 0, err
    played = [float(r) for r in re.findall(r"^episode \d+: return (\S+),", out, re.MULTILINE)]
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--episodes", "3", "--seed", "5", "--json")
    assert code == 0, err
    assert played == json.loads(out)["returns"]


def test_play_and_evaluate_default_to_the_same_seed(tmp_path, capsys):
    """`play` seeded with 0 and `evaluate` with 12345 unless told: the same checkpoint played
    other episodes than it was scored on."""
    checkpoint, _ = save_policy(tmp_path, resolve_config("CartPole-v1"))
    code, out, err = run(capsys, "play", str(checkpoint), "--episodes", "10")
    assert code == 0, err
    played = [float(r) for r in re.findall(r"^episode \d+: return (\S+),", out, re.MULTILINE)]
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--episodes", "10", "--json")
    assert code == 0, err
    assert played == json.loads(out)["returns"]
    assert play_module.PlayOptions().seed == EVAL_SEED


def test_gif_frames_are_shrunk_and_capped(monkeypatch):
    monkeypatch.setattr(play_module, "MAX_GIF_FRAMES", 3)
    frames = GifFrames()
    rendered = []

    def render() -> np.ndarray:
        rendered.append(1)
        return np.zeros((500, 900, 3), np.uint8)

    for _ in range(5):
        frames.add(render)
    assert len(frames.images) == 3 and frames.left_out == 2 and len(rendered) == 3
    assert frames.images[0].size == (300, 167) and frames.images[0].mode == "P"  # 900x500 / 3


# the maze's value map


def test_value_map_holds_max_q_of_every_free_cell(maze_checkpoint):
    _, network = maze_checkpoint
    maze = MazeEnv(observation="onehot")
    figure, values = plot_value_map(maze, network)
    assert values.shape == (8, 8)
    assert np.isnan(values[maze.walls]).all() and not np.isnan(values[~maze.walls]).any()
    for row, col in [(0, 0), (4, 3), (7, 7)]:
        onehot = torch.zeros(1, 64)
        onehot[0, row * 8 + col] = 1.0
        assert values[row, col] == pytest.approx(float(network(onehot).max()), abs=1e-6)
    assert tuple(figure.get_size_inches() * figure.dpi) == pytest.approx(map_pixel_size((8, 8)))


def test_value_map_of_stacked_frames(tmp_path, capsys):
    config = with_env(resolve_config(MAZE_ID), frame_stack=3, kwargs={"layout": ["S..", ".#.", "..G", "#.."]})
    checkpoint, network = save_policy(tmp_path, config)
    maze = MazeEnv(layout=["S..", ".#.", "..G", "#.."])
    values, actions = value_grid(maze, network, frame_stack=3)
    stacked = torch.as_tensor(maze.observation_at(2, 1)).repeat(1, 3, 1)
    q = network(stacked)[0]
    assert values[2, 1] == pytest.approx(float(q.max()), abs=1e-6) and actions[2, 1] == int(q.argmax())
    assert np.isnan(values[1, 1]) and actions[1, 1] == -1
    code, out, err = run(capsys, "play", str(checkpoint), "--max-steps", "5", "--map", str(tmp_path / "stack.png"))
    assert code == 0, err
    with Image.open(tmp_path / "stack.png") as image:
        assert image.size == map_pixel_size((4, 3)) != map_pixel_size((3, 4))


# bad input: one line on stderr, exit 2, nothing written


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--episodes", "0"], "--episodes must be between 1 and 1000, got 0"),
        (["--episodes", "1001"], "--episodes must be between 1 and 1000, got 1001"),
        (["--seed", "-1"], "--seed must be between 0 and"),
        (["--max-steps", "0"], "--max-steps must be between 1 and 100000, got 0"),
        (["--fps", "0"], "--fps must be above 0 and at most 50, got 0.0"),
        (["--fps", "nan"], "--fps must be above 0 and at most 50, got nan"),
        (["--gif", "{tmp}/frames.png"], "--gif must name a .gif file in an existing directory, got {tmp}/frames.png"),
        (["--gif", "{tmp}/no/such.gif"], "--gif must name a .gif file in an existing directory"),
        (["--map", "{tmp}/map.gif"], "--map must name a .png file in an existing directory"),
    ],
)
def test_bad_flags(tmp_path, capsys, maze_checkpoint, flags, message):
    checkpoint, _ = maze_checkpoint
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    code, out, err = run(capsys, "play", str(checkpoint), *flags)
    assert code == 2 and out == ""
    assert (
        err.count("\n") == 1 and err.startswith("distdqn: error: ") and message.replace("{tmp}", str(tmp_path)) in err
    )
    assert list(tmp_path.iterdir()) == []


def test_a_missing_checkpoint(tmp_path, capsys):
    code, _, err = run(capsys, "play", str(tmp_path / "nothing"), "--gif", str(tmp_path / "x.gif"))
    assert code == 2 and err == f"distdqn: error: checkpoint not found: {tmp_path / 'nothing'}\n"


def test_an_env_that_cannot_render_rgb_frames(tmp_path, capsys, counter_id):
    checkpoint, _ = save_policy(tmp_path, with_env(resolve_config(), id=counter_id))
    gif = tmp_path / "counter.gif"
    code, _, err = run(capsys, "play", str(checkpoint), "--gif", str(gif))
    assert code == 2
    assert err == f"distdqn: error: env '{counter_id}' cannot render rgb_array frames (its render modes: none)\n"
    assert not gif.exists()
    assert run(capsys, "play", str(checkpoint))[0] == 0  # without --gif nothing is rendered


def test_a_renderer_that_needs_a_missing_package(tmp_path, capsys, monkeypatch, maze_checkpoint):
    def render(self):
        raise gym.error.DependencyNotInstalled("pygame is not installed\nTraceback of the import")

    monkeypatch.setattr(MazeEnv, "render", render)
    checkpoint, _ = maze_checkpoint
    code, _, err = run(capsys, "play", str(checkpoint), "--gif", str(tmp_path / "x.gif"))
    assert code == 2 and err.count("\n") == 1
    assert err == f"distdqn: error: env '{MAZE_ID}' cannot render rgb_array frames: pygame is not installed\n"
    assert list(tmp_path.iterdir()) == []


def test_map_of_an_env_that_is_no_maze(tmp_path, capsys):
    checkpoint, _ = save_policy(tmp_path, resolve_config("CartPole-v1"))
    code, _, err = run(capsys, "play", str(checkpoint), "--map", str(tmp_path / "map.png"))
    assert code == 2 and err.count("\n") == 1
    assert "--map draws distdqn/Maze-v0 policies" in err and "'CartPole-v1'" in err


def test_weights_of_another_network(tmp_path, capsys):
    config = resolve_config(MAZE_ID)
    checkpoint = save_checkpoint(tmp_path, "latest", config, {"online.head.weight": torch.zeros(4, 8)}, {})
    code, _, err = run(capsys, "play", str(checkpoint))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"distdqn: error: checkpoint {checkpoint}: weights for ['head.weight'] do not fit")


def test_an_env_id_that_imports_a_module_needs_allow_import(tmp_path, capsys):
    module = "gymnasium.envs.classic_control"
    checkpoint, _ = save_policy(tmp_path, with_env(resolve_config("CartPole-v1"), id=f"{module}:CartPole-v1"))
    code, _, err = run(capsys, "play", str(checkpoint))
    assert code == 2 and err.count("\n") == 1 and f"pass --allow-import {module} if you trust it" in err
    assert run(capsys, "play", str(checkpoint), "--allow-import", module)[0] == 0


def run_with_best_and_latest(run_dir: Path) -> Path:
    """A run directory whose `best` always moves right, reaching the goal of `S.G` in 2 steps, and
    whose `latest` always moves left, into the wall, until --max-steps cuts the episode."""
    config = with_env(resolve_config(MAZE_ID), kwargs={"layout": ["S.G"]})
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(config_to_toml(config))
    save_policy(run_dir, config, always=1, name="best")
    save_policy(run_dir, config, always=3, name="latest")
    return run_dir


def test_a_run_directory_means_its_best_checkpoint_and_latest_with_a_flag(tmp_path, capsys):
    """`play RUN_DIR` said "checkpoint RUN_DIR is incomplete: tensors.safetensors is missing"."""
    run_dir = run_with_best_and_latest(tmp_path / "run")
    code, out, err = run(capsys, "play", str(run_dir), "--max-steps", "9")
    assert code == 0 and episode_lengths(out) == [2], err
    code, out, err = run(capsys, "play", str(run_dir), "--max-steps", "9", "--latest")
    assert code == 0 and episode_lengths(out) == [9], err
    code, out, err = run(capsys, "evaluate", str(run_dir), "--episodes", "2", "--json")
    assert code == 0 and json.loads(out)["length_mean"] == 2, err
    code, out, err = run(capsys, "evaluate", str(run_dir), "--episodes", "2", "--json", "--latest")
    assert code == 0 and json.loads(out)["length_mean"] > 2, err


def test_a_run_directory_on_object_storage_means_its_best_checkpoint(tmp_path, capsys):
    from distdqn.storage.object_store import RemoteRun

    uri = f"memory://distdqn-play/{tmp_path.name}"
    RemoteRun(uri, run_with_best_and_latest(tmp_path / "run")).sync()
    code, out, err = run(capsys, "play", uri, "--max-steps", "9")
    assert code == 0 and episode_lengths(out) == [2], err
    code, out, err = run(capsys, "play", uri, "--max-steps", "9", "--latest")
    assert code == 0 and episode_lengths(out) == [9], err
    code, out, err = run(capsys, "evaluate", uri, "--episodes", "1", "--json")
    assert code == 0 and json.loads(out)["length_mean"] == 2, err


@pytest.mark.parametrize("remote", [False, True])
def test_a_run_without_best_and_latest_on_a_checkpoint_are_one_line(tmp_path, capsys, remote):
    from distdqn.storage.object_store import RemoteRun

    run_dir = run_with_best_and_latest(tmp_path / "run")
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints").mkdir()
    save_policy(run_dir, with_env(resolve_config(MAZE_ID), kwargs={"layout": ["S.G"]}), always=1)  # latest only
    where = str(run_dir)
    if remote:
        where = f"memory://distdqn-play/{tmp_path.name}"
        RemoteRun(where, run_dir).sync()
    for command in ("play", "evaluate"):
        code, out, err = run(capsys, command, where)
        assert code == 2 and out == ""
        assert err == (
            f"distdqn: error: run {where} has no checkpoints/best (it has had no evaluation yet, or "
            "checkpoint.keep_best is off; --latest reads checkpoints/latest)\n"
        )
        assert run(capsys, command, where, "--latest")[0] == 0
        checkpoint = f"{where}/checkpoints/latest"
        code, out, err = run(capsys, command, checkpoint, "--latest")
        assert code == 2 and err == (
            f"distdqn: error: --latest picks a run directory's checkpoints/latest; {checkpoint} is no run directory\n"
        )


def test_a_gif_of_a_pygame_env_prints_nothing_on_stderr(tmp_path):
    """SDL printed "error: XDG_RUNTIME_DIR is invalid or not set in the environment." where there
    is no display (CI, a server, a container)."""
    import subprocess
    import sys

    pytest.importorskip("pygame")
    checkpoint, _ = save_policy(tmp_path, resolve_config("CartPole-v1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDL_") and k not in ("XDG_RUNTIME_DIR", "DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-m", "distdqn", "play", str(checkpoint), "--gif", str(tmp_path / "cartpole.gif")],
        capture_output=True,
        text=True,
        env={**env, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "cartpole.gif").is_file()


def test_sdl_drivers_the_user_chose_are_kept(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    monkeypatch.delenv("SDL_AUDIODRIVER", raising=False)
    play_module.offscreen_sdl()
    assert (os.environ["SDL_VIDEODRIVER"], os.environ["SDL_AUDIODRIVER"]) == ("x11", "dummy")


def test_a_checkpoint_missing_a_file_is_still_a_checkpoint_not_a_run(tmp_path, capsys):
    checkpoint, _ = save_policy(tmp_path, resolve_config("CartPole-v1"))
    (checkpoint / "tensors.safetensors").unlink()
    (checkpoint / "manifest.json").unlink()
    code, _, err = run(capsys, "play", str(checkpoint))
    assert (
        code == 2 and err == f"distdqn: error: checkpoint {checkpoint} is incomplete: tensors.safetensors is missing\n"
    )
