"""The classic grid maze: the agent's cell is the state, four moves, walls, a goal.

Registered as `distdqn/Maze-v0`. A layout is rows of text: `#` wall, `.` floor, `S` start,
`G` goal. Instead of a layout, any of `size`, `wall_fraction` and `layout_seed` draws a random
layout whose goal is reachable (the others at their defaults: 8, 0.25 and seed 0): every env made
with the same arguments has the same layout, so actors and evaluator see one maze. With none of
them (and no layout) the maze is `DEFAULT_LAYOUT`. Moving into a wall or off the grid leaves the
agent where it is. Each step costs `step_reward`; reaching the goal pays `goal_reward` and
terminates the episode.

The observation is the agent's cell one-hot (`observation="onehot"`, the default), or its (row,
col) scaled to [0, 1] (`"coordinates"`). The default was once the coordinates, which the preset's
MLP does not learn in its 20k steps on the 8x8 default layout nor on a 12x12 random one: a greedy
policy that bumps into a wall repeats the bump in this deterministic maze until the 200-step time
limit, so each evaluation returned 200 x -0.01 = -2.0. The one-hot cell learns both to the
shortest path. Since `--set env.kwargs={...}` replaces the preset's kwargs as a whole, the default
is what such a run gets.

Render modes: `ansi` (the layout as text, `A` for the agent) and `rgb_array` (CELL_PIXELS square
pixels a cell: walls dark, floor light, the goal green, the agent a red square inside its cell).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from distdqn.config import short_repr

DEFAULT_LAYOUT = (
    "S..#....",
    ".#.#.##.",
    ".#...#..",
    ".####.#.",
    "......#.",
    ".##.###.",
    "..#...#.",
    "#...#..G",
)

# up, right, down, left as (row, column) deltas
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])

CELL_PIXELS = 16
"""Side of one cell in `rgb_array` frames: a GIF of the default 8x8 maze is 128x128 pixels."""
WALL_RGB = (40, 40, 40)
FLOOR_RGB = (235, 235, 235)
GOAL_RGB = (46, 160, 67)
AGENT_RGB = (214, 39, 40)


LAYOUT_TRIES = 1000
"""Random layouts drawn before giving up: a wall fraction near 1 may never leave a path."""

RANDOM_SIZE, RANDOM_WALL_FRACTION, RANDOM_LAYOUT_SEED = 8, 0.25, 0
"""What a random layout takes for `size`, `wall_fraction` or `layout_seed` when not given."""
MAX_SIZE = 256
"""The largest random maze: 65,536 cells, drawn in under a second (LAYOUT_TRIES failed draws of
one take about 20 s on the 2-core VM), and as many values in its one-hot observation."""
MAX_CELLS = MAX_SIZE * MAX_SIZE
"""The most cells a given layout may have (a YAML alias repeats a row at no cost in the file)."""


def random_layout(size: int, wall_fraction: float, rng: np.random.Generator) -> tuple[str, ...]:
    """A size x size layout with start at the top left, goal at the bottom right, and random
    walls, redrawn until the goal is reachable (ValueError after LAYOUT_TRIES draws)."""
    if not (_is_int(size) and 2 <= size <= MAX_SIZE):
        raise ValueError(f"a random maze needs an int size in [2, {MAX_SIZE}], got size={short_repr(size)}")
    if not (_is_number(wall_fraction) and 0.0 <= wall_fraction < 1.0):
        raise ValueError(f"a random maze needs 0 <= wall_fraction < 1, got wall_fraction={short_repr(wall_fraction)}")
    for _ in range(LAYOUT_TRIES):
        walls = rng.random((size, size)) < wall_fraction
        walls[0, 0] = walls[-1, -1] = False
        rows = ["".join("#" if wall else "." for wall in row) for row in walls]
        rows[0] = "S" + rows[0][1:]
        rows[-1] = rows[-1][:-1] + "G"
        layout = tuple(rows)
        if shortest_path_length(layout) is not None:
            return layout
    raise ValueError(
        f"no {size}x{size} layout with wall_fraction={wall_fraction} in {LAYOUT_TRIES} draws "
        "has a path from start to goal"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _parse(layout: tuple[str, ...]) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    if len({len(row) for row in layout}) != 1:
        raise ValueError("maze layout rows must all have the same length")
    if len(layout) * len(layout[0]) > MAX_CELLS:
        raise ValueError(f"maze layout has {len(layout)}x{len(layout[0])} cells, more than {MAX_CELLS:,}")
    grid = np.array([list(row) for row in layout])
    if not set(np.unique(grid)) <= set("#.SG"):
        raise ValueError("maze layout may only hold '#', '.', 'S' and 'G'")
    starts, goals = np.argwhere(grid == "S"), np.argwhere(grid == "G")
    if len(starts) != 1 or len(goals) != 1:
        raise ValueError("maze layout needs exactly one 'S' and one 'G'")
    return grid == "#", tuple(starts[0]), tuple(goals[0])


def shortest_path_length(layout: tuple[str, ...]) -> int | None:
    """Moves on a shortest path from S to G (breadth-first search), or None if unreachable."""
    walls, start, goal = _parse(layout)
    distance = {start: 0}
    frontier = deque([start])
    while frontier:
        cell = frontier.popleft()
        if cell == goal:
            return distance[cell]
        for dr, dc in MOVES:
            nxt = (cell[0] + dr, cell[1] + dc)
            inside = 0 <= nxt[0] < walls.shape[0] and 0 <= nxt[1] < walls.shape[1]
            if inside and not walls[nxt] and nxt not in distance:
                distance[nxt] = distance[cell] + 1
                frontier.append(nxt)
    return None


def _layout(
    layout: list[str] | tuple[str, ...] | None, size: int | None, wall_fraction: float | None, seed: int | None
) -> tuple[str, ...]:
    """The layout the constructor's arguments ask for; a given layout and random-layout arguments
    together are refused (the layout used to win silently)."""
    drawn = {"size": size, "wall_fraction": wall_fraction, "layout_seed": seed}
    given = [name for name, value in drawn.items() if value is not None]
    if layout is not None:
        if given:
            raise ValueError(f"a maze takes a layout or {', '.join(given)} (which draw a random one), not both")
        return tuple(layout)
    if not given:
        return DEFAULT_LAYOUT
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"layout_seed must be an int >= 0, got {short_repr(seed)}")
    return random_layout(
        RANDOM_SIZE if size is None else size,
        RANDOM_WALL_FRACTION if wall_fraction is None else wall_fraction,
        np.random.default_rng(RANDOM_LAYOUT_SEED if seed is None else seed),
    )


class MazeEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        layout: list[str] | tuple[str, ...] | None = None,
        size: int | None = None,
        layout_seed: int | None = None,
        wall_fraction: float | None = None,
        observation: Literal["coordinates", "onehot"] = "onehot",
        step_reward: float = -0.01,
        goal_reward: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        self.layout = _layout(layout, size, wall_fraction, layout_seed)
        self.walls, self.start, self.goal = _parse(self.layout)
        self.shape = self.walls.shape
        if observation not in ("coordinates", "onehot"):
            raise ValueError(f"observation must be 'coordinates' or 'onehot', got {short_repr(observation)}")
        self.observation_kind = observation
        self.step_reward = step_reward
        self.goal_reward = goal_reward
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(4)
        obs_size = 2 if observation == "coordinates" else self.walls.size
        self.observation_space = gym.spaces.Box(0.0, 1.0, (obs_size,), np.float32)
        self._position = self.start

    def _observation(self, position: tuple[int, int]) -> np.ndarray:
        if self.observation_kind == "coordinates":
            scale = np.maximum(np.array(self.shape) - 1, 1)
            return (np.array(position) / scale).astype(np.float32)
        onehot = np.zeros(self.walls.size, np.float32)
        onehot[position[0] * self.shape[1] + position[1]] = 1.0
        return onehot

    def observation_at(self, row: int, col: int) -> np.ndarray:
        """The observation this env emits with the agent at (row, col), whatever its position now:
        what a value map asks the Q-network about each cell. ValueError for a wall or off the grid."""
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]) or self.walls[row, col]:
            raise ValueError(f"({row}, {col}) is no free cell of this {self.shape[0]}x{self.shape[1]} maze")
        return self._observation((row, col))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._position = self.start
        return self._observation(self._position), {}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid maze action {action!r}")
        row, col = self._position[0] + MOVES[action][0], self._position[1] + MOVES[action][1]
        if 0 <= row < self.shape[0] and 0 <= col < self.shape[1] and not self.walls[row, col]:
            self._position = (int(row), int(col))
        reached = self._position == self.goal
        reward = self.goal_reward if reached else self.step_reward
        return self._observation(self._position), float(reward), reached, False, {}

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._rgb_frame()
        if self.render_mode != "ansi":
            return None
        rows = [list(row.replace("S", ".")) for row in self.layout]
        rows[self._position[0]][self._position[1]] = "A"
        return "\n".join("".join(row) for row in rows)

    def _rgb_frame(self) -> np.ndarray:
        cells = np.where(self.walls[..., None], WALL_RGB, FLOOR_RGB).astype(np.uint8)
        cells[self.goal] = GOAL_RGB
        frame = cells.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)
        margin = CELL_PIXELS // 4  # the agent is a smaller square, so the goal still shows around it
        top, left = (coordinate * CELL_PIXELS + margin for coordinate in self._position)
        frame[top : top + CELL_PIXELS - 2 * margin, left : left + CELL_PIXELS - 2 * margin] = AGENT_RGB
        return frame
