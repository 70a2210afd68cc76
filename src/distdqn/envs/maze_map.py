"""The value map of a maze policy: every free cell coloured by max_a Q(s, a) with the agent
standing there, an arrow for the greedy action, walls black, the goal a star.

An episode shows the states one policy visits; the map shows what the network thinks of every
state, so a loop, a dead end valued like the goal, or a region never learned stands out at a glance.

The picture is laid out in pixels, not inches: MAP_CELL_PIXELS a cell plus fixed margins (see
`map_pixel_size`), so a map's size follows its maze's and two maps of one maze compare cell by cell.
matplotlib is imported only here, and only its Agg-backed `Figure`: no pyplot, no display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from distdqn.envs.maze import MOVES, MazeEnv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAP_CELL_PIXELS = 40
MAP_DPI = 100
_LEFT, _RIGHT, _BOTTOM, _TOP = 32, 100, 28, 28
"""Pixels around the grid: row numbers on the left, the colour bar and its labels on the right,
column numbers below, the title above."""
_BAR_GAP, _BAR_WIDTH = 10, 14


def map_pixel_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(width, height) in pixels of the map of a maze of `shape` (rows, columns)."""
    rows, cols = shape
    return _LEFT + cols * MAP_CELL_PIXELS + _RIGHT, _BOTTOM + rows * MAP_CELL_PIXELS + _TOP


def value_grid(maze: MazeEnv, q_network: nn.Module, frame_stack: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """max_a Q and argmax_a Q of every free cell, NaN and -1 on walls. Each cell is asked with the
    observation the maze emits with the agent there; with a frame stack, that observation
    `frame_stack` times, as the network sees it at an episode's start or after a bump into a wall."""
    free = np.argwhere(~maze.walls)
    observations = np.stack([maze.observation_at(int(row), int(col)) for row, col in free])
    if frame_stack > 1:
        observations = np.repeat(observations[:, None], frame_stack, axis=1)
    with torch.inference_mode():
        q = q_network(torch.as_tensor(observations)).numpy()
    values = np.full(maze.shape, np.nan)
    actions = np.full(maze.shape, -1)
    values[tuple(free.T)] = q.max(axis=1)
    actions[tuple(free.T)] = q.argmax(axis=1)
    return values, actions


def plot_value_map(
    maze: MazeEnv, q_network: nn.Module, frame_stack: int = 1, title: str = ""
) -> tuple[Figure, np.ndarray]:
    """The map as a figure of `map_pixel_size(maze.shape)` pixels at MAP_DPI, and its value grid
    (from `value_grid`). No arrow in the goal: an episode ends there, so no action is taken."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    values, actions = value_grid(maze, q_network, frame_stack)
    rows, cols = maze.shape
    width, height = map_pixel_size(maze.shape)
    grid_width, grid_height = cols * MAP_CELL_PIXELS, rows * MAP_CELL_PIXELS
    figure = Figure(figsize=(width / MAP_DPI, height / MAP_DPI), dpi=MAP_DPI)
    axes = figure.add_axes((_LEFT / width, _BOTTOM / height, grid_width / width, grid_height / height))
    bar_axes = figure.add_axes(
        ((_LEFT + grid_width + _BAR_GAP) / width, _BOTTOM / height, _BAR_WIDTH / width, grid_height / height)
    )
    colours = mpl.colormaps["viridis"].with_extremes(bad="black")
    image = axes.imshow(
        np.ma.masked_invalid(values),
        cmap=colours,
        interpolation="nearest",
        extent=(-0.5, cols - 0.5, rows - 0.5, -0.5),
        aspect="auto",
    )
    figure.colorbar(image, cax=bar_axes).set_label(r"$\max_a Q(s, a)$", fontsize=9)
    bar_axes.tick_params(labelsize=7)
    arrows = actions >= 0
    arrows[maze.goal] = False
    cell_rows, cell_cols = np.nonzero(arrows)
    steps = MOVES[actions[arrows]]
    axes.quiver(
        cell_cols,
        cell_rows,
        steps[:, 1],
        steps[:, 0],  # rows grow downwards, as the y axis does here: angles="xy" keeps the direction
        angles="xy",
        scale_units="xy",
        scale=1 / 0.6,
        pivot="middle",
        units="xy",
        width=0.07,
        color="white",
        edgecolor="black",
        linewidth=0.5,
    )
    marker_points = MAP_CELL_PIXELS * 0.6 * 72 / MAP_DPI
    axes.plot(maze.goal[1], maze.goal[0], marker="*", markersize=marker_points, color="gold", markeredgecolor="black")
    axes.set_xlim(-0.5, cols - 0.5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    axes.tick_params(labelsize=7)
    if title:
        figure.text(_LEFT / width, 1 - 6 / height, title, fontsize=8, va="top")
    return figure, values
