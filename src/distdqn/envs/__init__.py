"""Making environments from config: any Gymnasium id with a Discrete action space, and observations
of a Box, or of the spaces `distdqn.envs.observations` encodes into one.

Vector envs use gymnasium's next-step autoreset: the step that ends an episode returns the final
observation, and the following step resets. The n-step accumulator relies on exactly this to
bootstrap truncated episodes from their true final observation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import parse_env_id
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from distdqn.config import EnvConfig, is_atari_id, short_repr, short_text
from distdqn.env_ids import MAZE_ID as MAZE_ID
from distdqn.env_ids import RECOMMEND_ID as RECOMMEND_ID
from distdqn.envs.observations import SUPPORTED_SPACES, EncodedBox, EncodeObservations
from distdqn.errors import EnvError
from distdqn.extras import dependency_line

if TYPE_CHECKING:
    from distdqn.envs.envpool_backend import EnvPoolVectorEnv

HIGHWAY_ENV_NAMES = frozenset(
    {
        "exit",
        "highway",
        "highway-fast",
        "intersection",
        "intersection-multi-agent",
        "lane-keeping",
        "merge",
        "merge-generic",
        "parking",
        "parking-ActionRepeat",
        "parking-parked",
        "racetrack",
        "racetrack-large",
        "racetrack-oval",
        "roundabout",
        "roundabout-generic",
        "two-way",
        "u-turn",
    }
)
"""Names (any version) that highway-env registers when imported: its ids have no namespace, so
only the name tells that an unregistered `highway-fast-v0` needs the driving extra."""


def is_highway_id(env_id: str) -> bool:
    """Whether `env_id` is one of highway-env's, whatever its version."""
    try:
        namespace, name, _ = parse_env_id(env_id)
    except gym.error.Error:  # a malformed id: gym.make names the problem
        return False
    return namespace is None and name in HIGHWAY_ENV_NAMES


def _register_optional(env_id: str) -> None:
    """Ids of optional packages are registered on first use, with a clear error if missing."""
    if is_atari_id(env_id):
        try:
            import ale_py
        except ImportError:
            raise EnvError(f"env {env_id!r} needs the atari extra: pip install 'distdqn[atari]'") from None
        gym.register_envs(ale_py)
    elif env_id.startswith("MinAtar/") and env_id not in gym.registry:
        try:
            logging.disable(logging.WARNING)  # minatar warns at import that seaborn (for rendering) is missing
            from minatar.gym import register_envs
        except ImportError:
            raise EnvError(f"env {env_id!r} needs the minatar extra: pip install 'distdqn[minatar]'") from None
        finally:
            logging.disable(logging.NOTSET)
        register_envs()
    elif is_highway_id(env_id) and env_id not in gym.registry:
        try:
            import highway_env
        except ImportError:
            raise EnvError(f"env {env_id!r} needs the driving extra: pip install 'distdqn[driving]'") from None
        gym.register_envs(highway_env)


def _line(error: Exception) -> str:
    """An env's error as one short line: gymnasium repeats the kwargs in its messages, which a
    YAML alias could expand to megabytes."""
    return short_text(str(error), limit=300) or type(error).__name__


def make_env(config: EnvConfig) -> gym.Env:
    """One env from the config, with a clear `EnvError` for ids DQN cannot drive.

    With `preprocessing = "atari"` the emulator runs every frame (frameskip=1) and gymnasium's
    AtariPreprocessing does the DeepMind steps: no-op starts, frame skip with max-pooling of the
    last two frames, grayscale, resize. The episode time limit then counts agent steps. Sticky
    actions stay at the env's default (0.25 for ALE v5). Frame stacking, reward clipping and
    life loss are the actor's business (training only), not the env's.
    """
    kwargs = dict(config.kwargs)
    atari = config.preprocessing == "atari"
    _register_optional(config.id)
    if config.max_episode_steps is not None and not atari:
        kwargs["max_episode_steps"] = config.max_episode_steps
    if atari:
        kwargs.setdefault("frameskip", 1)
    try:
        env = gym.make(config.id, **kwargs)
        if atari:
            env = gym.wrappers.AtariPreprocessing(
                env,
                noop_max=config.noop_max,
                frame_skip=config.frame_skip,
                screen_size=config.screen_size,
                terminal_on_life_loss=False,
                grayscale_obs=True,
                scale_obs=False,
            )
            if config.max_episode_steps is not None:
                env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
    except gym.error.DependencyNotInstalled as error:
        advice = dependency_line(error) or _line(error)
        raise EnvError(f"env {short_repr(config.id)} needs a package that is not installed: {advice}") from None
    except (gym.error.Error, ModuleNotFoundError, ImportError) as error:
        raise EnvError(f"cannot make env {short_repr(config.id)}: {_line(error)}") from None
    except (TypeError, ValueError, AttributeError, AssertionError, MemoryError) as error:
        # an env's constructor checks its arguments its own way (a render_mode of 5 fails on `.endswith`,
        # a size too large for memory on NumPy's allocation)
        raise EnvError(
            f"env {short_repr(config.id)} rejected env.kwargs {short_repr(config.kwargs)}: {_line(error)}"
        ) from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise EnvError(
            f"env {short_repr(config.id)} has action space {short_text(str(env.action_space))};"
            " DQN needs Discrete actions"
        )
    if isinstance(env.observation_space, gym.spaces.Box):
        return env
    try:
        return EncodeObservations(env)
    except ValueError as error:
        env.close()
        raise EnvError(f"env {short_repr(config.id)} has {_line(error)}; distdqn supports {SUPPORTED_SPACES}") from None


def make_vector_env(config: EnvConfig, num_envs: int) -> SyncVectorEnv | EnvPoolVectorEnv:
    """`num_envs` copies stepped in this process (one batched policy call per step), or one
    EnvPool batch of them with `backend = "envpool"`."""
    if config.backend == "envpool":
        from distdqn.envs.envpool_backend import EnvPoolVectorEnv

        return EnvPoolVectorEnv(config, num_envs)
    make_env(config).close()  # fail early, with the clear error, before building copies
    factories: list[Callable[[], gym.Env]] = [lambda: make_env(config) for _ in range(num_envs)]
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.NEXT_STEP)


def env_spaces(config: EnvConfig) -> tuple[gym.Space, gym.Space]:
    """Observation space of one env's single frame, and its action space."""
    env = make_env(config)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def frame_box(space: gym.Space) -> gym.spaces.Box:
    """The Box of one env's frames: every env `make_env` builds observes one (see observations)."""
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"expected the Box of encoded frames, got {space}")
    return space


def num_actions(space: gym.Space) -> int:
    """Actions of a Discrete action space (`make_env` refuses any other)."""
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(f"DQN needs a Discrete action space, got {space}")
    return int(space.n)


def policy_space(config: EnvConfig, frame_space: gym.Space) -> gym.Space:
    """What the Q-network sees: `frame_stack` frames stacked on a new first axis (encoded observations
    keep their layout; an HxWxC image's stack becomes its channels in the network)."""
    if config.frame_stack == 1:
        return frame_space
    frames = frame_box(frame_space)
    low = np.repeat(frames.low[None], config.frame_stack, axis=0)
    high = np.repeat(frames.high[None], config.frame_stack, axis=0)
    if isinstance(frames, EncodedBox):
        return EncodedBox(frames.layout, low, high)
    return gym.spaces.Box(low, high, dtype=frames.dtype.type)
