"""`distdqn play`: watch a checkpoint's greedy policy, keep its episodes as an animated GIF or an MP4
video (or both, from the same frames), and for the maze draw what it learned about every cell
(`distdqn.envs.maze_map`).

The policy sees exactly what it saw in training and evaluation: one env from `make_env` (Atari
preprocessing and all), frames stacked by `FrameStacker`, the Q-network from `build_q_network`.
The GIF and the video show the env's own `render()` in `rgb_array` mode instead, which for a
preprocessed env is the base game's colour screen, not the 84x84 grayscale observation: one
frame after each reset and one after each step.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from distdqn.config import Config, EnvConfig
from distdqn.envs import MAZE_ID, frame_box, make_env, policy_space
from distdqn.errors import CheckpointError, EnvError, UserError
from distdqn.frames import FrameStacker
from distdqn.networks import build_q_network, load_weights
from distdqn.seeding import EVAL_SEED, env_seeds
from distdqn.tools.atomic import write_atomically
from distdqn.tools.video import Mp4Writer, require_encoder
from distdqn.types import Weights

MAX_PLAY_EPISODES = 1000
MAX_PLAY_STEPS = 100_000
MAX_FPS = 50.0
"""GIF frame delays are whole centiseconds, and viewers slow delays under 2 cs down to 10 cs."""
DEFAULT_FPS = 30.0
"""For envs whose metadata names no render_fps."""
MAX_GIF_SIDE = 400
"""Frames with a longer side are shrunk by a whole factor (CartPole's 600x400 to 300x200)."""
MAX_GIF_FRAMES = 2000
"""Frames kept for one GIF; later ones are left out, so a long run cannot fill the memory."""


@dataclass(frozen=True)
class PlayOptions:
    """What `distdqn play` was asked for; checked on creation, with one-line errors naming the flag."""

    episodes: int = 1
    seed: int = EVAL_SEED
    max_steps: int = 1000
    gif: Path | None = None
    map: Path | None = None
    fps: float | None = None
    video: Path | None = None

    def __post_init__(self) -> None:
        for flag, value, low, high in (
            ("--episodes", self.episodes, 1, MAX_PLAY_EPISODES),
            ("--seed", self.seed, 0, 2**63 - 1),
            ("--max-steps", self.max_steps, 1, MAX_PLAY_STEPS),
        ):
            if not low <= value <= high:
                raise UserError(f"{flag} must be between {low} and {high}, got {value}")
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:
            raise UserError(f"--fps must be above 0 and at most {MAX_FPS:g}, got {self.fps}")
        for flag, path, suffix in (
            ("--gif", self.gif, ".gif"),
            ("--map", self.map, ".png"),
            ("--video", self.video, ".mp4"),
        ):
            if path is not None and (path.suffix.lower() != suffix or not path.parent.is_dir()):
                raise UserError(f"{flag} must name a {suffix} file in an existing directory, got {path}")
        if self.video is not None:
            require_encoder("--video")


class Episode(NamedTuple):
    reward: float
    """The raw return: no reward clipping, a lost life no end."""
    length: int
    cut: bool
    """Ended by --max-steps rather than by the env."""


class FrameSink(Protocol):
    """Where played frames go (a GIF's frames, a video); `render` draws the frame when called,
    so that a sink that keeps no more frames need not."""

    def add(self, render: Callable[[], np.ndarray]) -> None: ...


class GifFrames:
    """Rendered frames, each shrunk to at most MAX_GIF_SIDE and turned into a palette image as it
    comes (what the GIF writer would do anyway, at a third of the memory of RGB)."""

    def __init__(self) -> None:
        self.images: list[Image.Image] = []
        self.left_out = 0

    def add(self, render: Callable[[], np.ndarray]) -> None:
        """Keep the frame `render()` returns; past MAX_GIF_FRAMES, count it without rendering."""
        if len(self.images) >= MAX_GIF_FRAMES:
            self.left_out += 1
            return
        image = Image.fromarray(render())
        factor = math.ceil(max(image.size) / MAX_GIF_SIDE)
        if factor > 1:
            image = image.reduce(factor)
        self.images.append(image.convert("P", palette=Image.Palette.ADAPTIVE))

    def save(self, path: Path, fps: float) -> int:
        """Write the GIF atomically, looping forever; return each frame's delay in milliseconds.
        Pillow merges runs of identical frames into one longer frame, so the animation's total
        duration, not its frame count, is (frames kept) x delay."""
        delay_ms = 10 * max(2, round(100 / fps))
        first, *rest = self.images
        write_atomically(
            path,
            lambda temporary: first.save(
                temporary, format="GIF", save_all=True, append_images=rest, duration=delay_ms, loop=0
            ),
        )
        return delay_ms


def offscreen_sdl() -> None:
    """Frames for a GIF need no window, but envs that draw with pygame (CartPole, highway-env)
    start SDL's video driver, which on a machine without a display prints "error: XDG_RUNTIME_DIR
    is invalid or not set" to stderr. SDL's dummy video and audio drivers render offscreen without
    a word; drivers the user chose are kept."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def _make_rendering_env(config: EnvConfig) -> gym.Env:
    """`make_env` with render_mode "rgb_array"; an env whose metadata does not list that mode is
    refused (EnvError naming it). The metadata is read from an env made without the mode first:
    an env that renders nothing may not even take the argument."""
    offscreen_sdl()
    probe = make_env(config)
    modes = probe.metadata.get("render_modes") or []
    probe.close()
    if "rgb_array" not in modes:
        listed = ", ".join(modes) or "none"
        raise EnvError(f"env {config.id!r} cannot render rgb_array frames (its render modes: {listed})")
    return make_env(config.model_copy(update={"kwargs": {**config.kwargs, "render_mode": "rgb_array"}}))


class GreedyPlayer:
    """One env of the checkpoint's config and its greedy Q-network; with `render`, an env that
    renders `rgb_array` frames."""

    def __init__(self, config: Config, weights: Weights, render: bool, source: str) -> None:
        self.env_id = config.env.id
        self.env = _make_rendering_env(config.env) if render else make_env(config.env)
        try:
            frame_space = frame_box(self.env.observation_space)
            self.q_network = build_q_network(
                config.network, policy_space(config.env, frame_space), self.env.action_space
            )
            self.q_network.requires_grad_(False)
            try:
                load_weights(self.q_network, weights.tensors)
            except ValueError as error:
                raise CheckpointError(f"checkpoint {source}: {error}") from None
        except BaseException:
            self.env.close()
            raise
        self._stacker = (
            FrameStacker(1, frame_space.shape, frame_space.dtype, config.env.frame_stack)
            if config.env.frame_stack > 1
            else None
        )

    def _policy_input(self, frame: np.ndarray, new_episode: bool) -> np.ndarray:
        if self._stacker is None:
            return frame[None]
        return self._stacker.push(frame[None], np.array([new_episode]))

    def render(self) -> np.ndarray:
        """The env's rgb_array frame, with a one-line EnvError when it cannot draw one (CartPole
        without pygame, an env whose render returns something else)."""
        try:
            frame = self.env.render()
        except gym.error.DependencyNotInstalled as error:
            reason = str(error).splitlines()[0]
            raise EnvError(f"env {self.env_id!r} cannot render rgb_array frames: {reason}") from None
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise EnvError(f"env {self.env_id!r} rendered {type(frame).__name__} instead of an RGB frame")
        return frame

    def _record(self, sinks: Sequence[FrameSink]) -> None:
        """Hand the current frame to each sink, rendered at most once for all of them."""
        render = functools.cache(self.render)
        for sink in sinks:
            sink.add(render)

    def episode(self, seed: int, max_steps: int, sinks: Sequence[FrameSink] = ()) -> Episode:
        """One greedy episode from `reset(seed=seed)`, cut after `max_steps` steps; its frames,
        one after the reset and one after each step, go to `sinks`."""
        observation, _ = self.env.reset(seed=seed)
        policy_input = self._policy_input(observation, new_episode=True)
        self._record(sinks)
        reward, length, ended = 0.0, 0, False
        while not ended and length < max_steps:
            with torch.inference_mode():
                action = int(self.q_network(torch.as_tensor(policy_input)).numpy().argmax(axis=1)[0])
            observation, step_reward, terminated, truncated, _ = self.env.step(action)
            policy_input = self._policy_input(observation, new_episode=False)
            reward += float(step_reward)
            length += 1
            ended = bool(terminated or truncated)
            self._record(sinks)
        return Episode(reward, length, cut=not ended)

    def default_fps(self) -> float:
        """The env's own render_fps (its speed in a window), at most MAX_FPS."""
        return min(MAX_FPS, float(self.env.metadata.get("render_fps") or DEFAULT_FPS))


def play(config: Config, weights: Weights, options: PlayOptions, source: str) -> list[Episode]:
    """Play, print each episode and the mean, and write the GIF, video and maze map asked for.

    Episode k is reset with the seed of the evaluator's env k (`env_seeds(seed, "evaluator", 0, ...)`),
    so with an evaluation epsilon of 0, `--seed` and `--episodes` of a recorded evaluation (best's
    eval_seed) or of `distdqn evaluate` (up to its batch of 64) play the very episodes it scored."""
    if options.map is not None and config.env.id != MAZE_ID:
        raise UserError(f"--map draws {MAZE_ID} policies; checkpoint {source} is of {config.env.id!r}")
    map_path = options.map
    if map_path is None and options.gif is not None and config.env.id == MAZE_ID:
        map_path = options.gif.with_name(f"{options.gif.stem}-map.png")
    recording = options.gif is not None or options.video is not None
    player = GreedyPlayer(config, weights, render=recording, source=source)
    try:
        fps = options.fps or player.default_fps()
        frames = GifFrames() if options.gif is not None else None
        with contextlib.ExitStack() as stack:
            video = stack.enter_context(Mp4Writer(options.video, fps)) if options.video is not None else None
            sinks = [sink for sink in (frames, video) if sink is not None]
            episodes = []
            for index, seed in enumerate(env_seeds(options.seed, "evaluator", 0, options.episodes)):
                episode = player.episode(seed, options.max_steps, sinks)
                episodes.append(episode)
                cut = " (cut at --max-steps)" if episode.cut else ""
                print(f"episode {index + 1}: return {episode.reward:.2f}, length {episode.length}{cut}")
        rewards = [episode.reward for episode in episodes]
        lengths = [episode.length for episode in episodes]
        print(
            f"{config.env.id}: mean return {np.mean(rewards):.2f} over {len(episodes)} episodes "
            f"(mean length {np.mean(lengths):.1f})"
        )
        if frames is not None and options.gif is not None:
            delay_ms = frames.save(options.gif, fps)
            width, height = frames.images[0].size
            left_out = f", the last {frames.left_out} left out" if frames.left_out else ""
            print(f"wrote {options.gif}: {len(frames.images)} frames of {width}x{height}, {delay_ms} ms each{left_out}")
        if video is not None and video.size is not None:
            width, height = video.size
            print(f"wrote {options.video}: {video.frames} frames of {width}x{height} at {fps:g} fps (H.264)")
        if map_path is not None:
            _write_maze_map(player, config, map_path)
    finally:
        player.env.close()
    return episodes


def _write_maze_map(player: GreedyPlayer, config: Config, path: Path) -> None:
    from distdqn.envs.maze import MazeEnv
    from distdqn.envs.maze_map import plot_value_map

    maze = player.env.unwrapped
    if not isinstance(maze, MazeEnv):
        raise TypeError(f"{MAZE_ID} made {type(maze).__name__}, not a MazeEnv")
    figure, _ = plot_value_map(maze, player.q_network, config.env.frame_stack, title=f"{MAZE_ID}: greedy policy")
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=figure.dpi))
    rows, cols = maze.shape
    print(f"wrote {path}: value map of the {rows}x{cols} maze")
