"""EnvPool's C++ Atari envs behind the part of gymnasium's VectorEnv API the roles use.

EnvPool runs the same DeepMind preprocessing as our ale-py path (no-op starts, frame skip with
max-pooling of the last two frames, grayscale, area resize) in threads, and, like gymnasium's
next-step autoreset, resets an env on the step after its episode ended. We ask it for single
frames (stack_num=1), raw rewards and no life-loss episodes: stacking, clipping and life loss
stay with the actor, exactly as on the ale-py path. EnvPool presses FIRE at every reset by
default (baselines' FireResetEnv, spending one of the no-op frames on it); gymnasium's
preprocessing does not, and neither did the DQN papers nor Dopamine, so we turn it off: in
Breakout the agent must learn to launch the ball on both backends.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from distdqn.config import EnvConfig
from distdqn.errors import EnvError


def envpool_task(env_id: str) -> tuple[str, float]:
    """EnvPool's task id for an ALE id, and the sticky-action probability that id implies."""
    if env_id.startswith("ALE/") and env_id.endswith("-v5"):
        return env_id.removeprefix("ALE/"), 0.25
    if env_id.endswith("NoFrameskip-v4"):
        return env_id.removesuffix("NoFrameskip-v4") + "-v5", 0.0
    raise EnvError(f"env.backend = 'envpool' takes ALE/<Game>-v5 or <Game>NoFrameskip-v4 ids, got {env_id!r}")


ALE_FRAMES_PER_EPISODE = 108_000
"""ale-py's `max_num_frames_per_episode` for both id families: 30 minutes of play at 60 Hz."""


def envpool_ale_options(config: EnvConfig) -> dict[str, Any]:
    """EnvPool's settings for the ALE options that `config` gives the ale-py path.

    ale-py takes `env.kwargs`; EnvPool has its own names for the few that matter, and we refuse
    the rest rather than drop them (a dropped `full_action_space` gave 4 actions here and 18 there).
    ale-py ends an episode at `max_num_frames_per_episode` emulator frames and, when
    `env.max_episode_steps` is set, also at that many agent steps; EnvPool counts agent steps
    only, so it gets the smaller of the two in steps. (ALE's frames include the no-op start, so
    ale-py may still truncate up to `noop_max / frame_skip` steps sooner.)
    """
    task, sticky = envpool_task(config.id)
    kwargs = config.kwargs
    unknown = sorted(
        set(kwargs)
        - {"repeat_action_probability", "full_action_space", "mode", "difficulty", "max_num_frames_per_episode"}
    )
    if unknown:
        raise EnvError(f"env.backend = 'envpool' has no counterpart for env.kwargs {unknown}")
    frames = kwargs.get("max_num_frames_per_episode", ALE_FRAMES_PER_EPISODE)
    limits = [steps for steps in (frames and -(-frames // config.frame_skip), config.max_episode_steps) if steps]
    return {
        "task_id": task,
        "repeat_action_probability": kwargs.get("repeat_action_probability", sticky),
        "full_action_space": kwargs.get("full_action_space", False),
        "mode": -1 if kwargs.get("mode") is None else kwargs["mode"],  # -1: the game's default
        "difficulty": -1 if kwargs.get("difficulty") is None else kwargs["difficulty"],
        "max_episode_steps": min(limits, default=2**30),  # no limit on either: 2**30 steps is none
    }


class EnvPoolVectorEnv:
    def __init__(self, config: EnvConfig, num_envs: int) -> None:
        try:
            import envpool
        except ImportError:
            raise EnvError("env.backend = 'envpool' needs the envpool extra: pip install 'distdqn[envpool]'") from None
        ale = envpool_ale_options(config)
        self._make = lambda seed: envpool.make_gymnasium(
            num_envs=num_envs,
            seed=seed,
            stack_num=1,
            episodic_life=False,
            reward_clip=False,
            use_fire_reset=False,
            noop_max=config.noop_max,
            frame_skip=config.frame_skip,
            img_height=config.screen_size,
            img_width=config.screen_size,
            gray_scale=True,
            use_inter_area_resize=True,
            **ale,
        )
        self._env = self._make(0)
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(0, 255, (config.screen_size, config.screen_size), np.uint8)
        self.single_action_space = gym.spaces.Discrete(int(self._env.action_space.n))

    def reset(self, seed: int | list[int | None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Like gymnasium's: one seed for all envs, or one per env. EnvPool takes one seed when it
        is made and seeds env k with seed + k, so of a list only the first (as int32) is used."""
        first = seed[0] if isinstance(seed, list) else seed
        if first is not None:
            self._env.close()
            self._env = self._make(first % 2**31)
        observations, info = self._env.reset()
        return observations[:, 0], info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        observations, rewards, terminated, truncated, info = self._env.step(np.asarray(actions, np.int32))
        return observations[:, 0], rewards.astype(np.float64), terminated, truncated, info

    def close(self) -> None:
        self._env.close()
