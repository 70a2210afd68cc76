"""distdqn's own Gymnasium envs, registered when `distdqn` is imported: `gym.register_envs(distdqn)`
then `gym.make("distdqn/Maze-v0")` works as it does for ale_py. Registering names an entry point
and imports nothing of the env itself."""

from __future__ import annotations

import gymnasium as gym

MAZE_ID = "distdqn/Maze-v0"
RECOMMEND_ID = "distdqn/Recommend-v0"


def register_builtin_envs() -> None:
    if MAZE_ID not in gym.registry:
        gym.register(id=MAZE_ID, entry_point="distdqn.envs.maze:MazeEnv", max_episode_steps=200)
    if RECOMMEND_ID not in gym.registry:
        # a session ends with its time budget; the cap only cuts one stretched by a small skip_time
        gym.register(id=RECOMMEND_ID, entry_point="distdqn.envs.recommend:RecommendEnv", max_episode_steps=400)
