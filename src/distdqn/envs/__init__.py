"""Making environments from config: any Gymnasium id with a Discrete action space.

Vector envs use gymnasium's next-step autoreset: the step that ends an episode returns the final
observation, and the following step resets. The n-step accumulator relies on exactly this to
bootstrap truncated episodes from their true final observation.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from distdqn.config import EnvConfig
from distdqn.errors import EnvError

MAZE_ID = "distdqn/Maze-v0"

if MAZE_ID not in gym.registry:
    gym.register(id=MAZE_ID, entry_point="distdqn.envs.maze:MazeEnv", max_episode_steps=200)


def make_env(config: EnvConfig) -> gym.Env:
    """One env from the config, with a clear `EnvError` for ids DQN cannot drive."""
    kwargs = dict(config.kwargs)
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    try:
        env = gym.make(config.id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"env {config.id!r} needs a package that is not installed: {error}") from None
    except (gym.error.Error, ModuleNotFoundError, ImportError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EnvError(f"cannot make env {config.id!r}: {message}") from None
    except TypeError as error:
        raise EnvError(f"env {config.id!r} rejected env.kwargs: {error}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise EnvError(f"env {config.id!r} has action space {env.action_space}; DQN needs Discrete actions")
    return env


def make_vector_env(config: EnvConfig, num_envs: int) -> SyncVectorEnv:
    """`num_envs` copies stepped in this process (one batched policy call per step)."""
    make_env(config).close()  # fail early, with the clear error, before building copies
    factories: list[Callable[[], gym.Env]] = [lambda: make_env(config) for _ in range(num_envs)]
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.NEXT_STEP)


def env_spaces(config: EnvConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of one env, for building networks and replay."""
    env = make_env(config)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
