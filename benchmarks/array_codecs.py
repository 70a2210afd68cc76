"""What each array codec costs on replay-shaped data: MB raw, MB on disk, seconds to write (with
fsync, as a checkpoint does) and to read back (`read_array`, from the page cache), and MB/s of
raw data both ways.

Run by hand from the repo root (one array in memory at a time: 7 GB for Atari's 1M frames):

    .venv/bin/python benchmarks/array_codecs.py [--atari-frames 1000000] [--zstd-levels 1 3] [--zstd-threads 0 -1]

The data is synthetic but shaped and behaving like a replay's observations, so that the codecs
see what they would in a checkpoint: CartPole observations from the real env under a random
policy; MinAtar Breakout-like frames (paddle, ball, its trail, bricks that disappear); Atari-like
84x84 frames with a fixed background (walls, brick bands, a textured strip that scrolls), a
score that changes now and then, and eight objects that move and bounce (new every episode),
their edges blurred by where they sit between pixels.

Each time is the fastest of `--repeat` runs: the machines are shared, and a slow run measures
the neighbours.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from distdqn.storage import array_files
from distdqn.storage.array_files import array_file_name, read_array, write_array

MB = 1e6
GENERATE_CHUNK = 8192


def cartpole_observations(count: int, rng: np.random.Generator) -> np.ndarray:
    env = gym.make("CartPole-v1")
    observations = np.empty((count, 4), np.float32)
    observation, _ = env.reset(seed=int(rng.integers(1 << 31)))
    for index in range(count):
        observations[index] = observation
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            observation, _ = env.reset()
    return observations


def _bounce(start: np.ndarray, velocity: np.ndarray, t: np.ndarray, high: int) -> np.ndarray:
    """Integer positions in [0, high] of points moving from `start` at `velocity`, bouncing at the ends."""
    travelled = np.mod(start + velocity * t, 2 * high)
    return np.minimum(travelled, 2 * high - travelled).astype(np.intp)


def minatar_frames(count: int, rng: np.random.Generator, episode: int = 500) -> np.ndarray:
    frames = np.zeros((count, 10, 10, 4), bool)
    t = np.arange(count) % episode
    episodes = count // episode + 1
    starts, velocities = rng.uniform(0, 9, (episodes, 3)), rng.choice([-1.0, 1.0], (episodes, 3))
    brick_gone_at = rng.integers(0, 3 * episode, (episodes, 3, 10))
    ep, rows = np.arange(count) // episode, np.arange(count)

    def at(axis: int, when: np.ndarray) -> np.ndarray:
        return _bounce(starts[ep, axis], velocities[ep, axis], when, 9)

    frames[rows, 9, at(0, t), 0] = True  # paddle
    frames[rows, at(2, t), at(1, t), 1] = True  # ball
    frames[rows, at(2, t - 1), at(1, t - 1), 2] = True  # its trail
    frames[:, 1:4, :, 3] = brick_gone_at[ep] > t[:, None, None]
    return frames


def _atari_background(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fixed 84x84 background and the texture of its scrolling strip (rows 60-69)."""
    background = np.full((84, 84), 87, np.uint8)
    background[:10] = 0  # score area
    background[10:13] = background[81:] = 142  # walls
    for band in range(6):  # brick bands, one gray each
        background[20 + 2 * band : 22 + 2 * band, 4:80] = 60 + 25 * band
    strip = rng.integers(60, 120, (10, 84), dtype=np.uint8)
    strip[:, ::7] = 40  # trees, posts: some structure in the texture
    return background, strip


def atari_frames(count: int, rng: np.random.Generator, episode: int = 2000) -> np.ndarray:
    frames = np.empty((count, 84, 84), np.uint8)
    background, strip = _atari_background(rng)
    objects = 8
    episodes = count // episode + 1
    starts = rng.uniform(0, 70, (episodes, objects, 2))
    velocities = rng.uniform(-1.5, 1.5, (episodes, objects, 2))
    sizes, levels = rng.integers(2, 8, (objects, 2)), rng.integers(150, 255, objects).astype(np.uint8)
    score = np.cumsum(rng.random(count) < 0.005)  # points so far, counted from the run's start
    columns = np.arange(84)
    for begin in range(0, count, GENERATE_CHUNK):
        index = np.arange(begin, min(begin + GENERATE_CHUNK, count))
        chunk, t, ep = frames[index[0] : index[-1] + 1], index % episode, index // episode
        chunk[:] = background
        chunk[:, 60:70, :] = strip[:, (columns[None, :] + t[:, None] // 2) % 84].transpose(1, 0, 2)
        frame = np.arange(len(index))
        for k in range(objects):
            height, width = sizes[k]
            y = _bounce(starts[ep, k, 0], velocities[ep, k, 0], t, 84 - 14 - height) + 13
            x = _bounce(starts[ep, k, 1], velocities[ep, k, 1], t, 84 - 1 - width)
            rows = y[:, None, None] + np.arange(height)[None, :, None]
            cols = x[:, None, None] + np.arange(width)[None, None, :]
            chunk[frame[:, None, None], rows, cols] = levels[k]
            # downscaling blurs an edge by where the object sits between pixels
            edge = (levels[k] * np.mod(starts[ep, k, 1] + velocities[ep, k, 1] * t, 1.0)).astype(np.uint8)
            chunk[frame[:, None], rows[:, :, 0], x[:, None] + width] = edge[:, None]
        bits = ((score[index] - score[ep * episode])[:, None] >> np.arange(8)) & 1
        chunk[:, 3:7, 4:44] = np.repeat(bits * 200, 5, axis=1)[:, None, :].astype(np.uint8)
    return frames


def _crc(array: np.ndarray) -> int:
    """A checksum of the array's bytes in order, taken in slabs (no full-size temporary)."""
    data, crc = memoryview(array.reshape(-1).view(np.uint8)), 0
    for begin in range(0, len(data), 64 << 20):
        crc = zlib.crc32(data[begin : begin + (64 << 20)], crc)
    return crc


def _write(array: np.ndarray, path: Path) -> tuple[int, float]:
    """Bytes on disk and seconds to write `array` and sync it."""
    start = time.perf_counter()
    size = write_array(path, array)
    descriptor = os.open(path, os.O_RDONLY)
    os.fsync(descriptor)
    os.close(descriptor)
    return size, time.perf_counter() - start


def _read(path: Path) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    array = read_array(path)
    return array, time.perf_counter() - start


def _settings(levels: list[int], threads: list[int]) -> list[tuple[str, str, int, int]]:
    """(label, codec, zstd level, zstd threads) for each codec setting measured; lz4 and none have no settings."""
    zstd = [(f"zstd-{level} threads={count}", "zstd", level, count) for level in levels for count in threads]
    return [*zstd, ("lz4", "lz4", 0, 0), ("none", "none", 0, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atari-frames", type=int, default=1_000_000)
    parser.add_argument("--zstd-levels", type=int, nargs="+", default=[array_files.ZSTD_LEVEL])
    parser.add_argument("--zstd-threads", type=int, nargs="+", default=[array_files.ZSTD_THREADS])
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    parser.add_argument("--only", choices=["cartpole", "minatar", "atari"], nargs="+")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: the temp dir)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data: dict[str, Callable[[], np.ndarray]] = {
        "cartpole": lambda: cartpole_observations(100_000, rng),
        "minatar": lambda: minatar_frames(100_000, rng),
        "atari": lambda: atari_frames(args.atari_frames, rng),
    }
    print("| data | shape, dtype | codec | MB raw | MB on disk | ratio | write s | read s | write MB/s | read MB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        for name in args.only or data:
            array = data[name]()
            raw, crc, shape = array.nbytes / MB, _crc(array), f"{list(array.shape)} {array.dtype}"
            for label, codec, level, threads in _settings(args.zstd_levels, args.zstd_threads):
                if codec == "zstd":
                    array_files.ZSTD_LEVEL, array_files.ZSTD_THREADS = level, threads
                path = Path(directory) / array_file_name(name, codec)
                writes, reads = [], []
                for _ in range(args.repeat):
                    size, seconds = _write(array, path)
                    writes.append(seconds)
                    del array  # what is read back replaces it: one copy in memory, not two
                    array, seconds = _read(path)
                    reads.append(seconds)
                    path.unlink()
                    if _crc(array) != crc:
                        raise AssertionError(f"{label} did not read back what it wrote")
                write, read = min(writes), min(reads)
                print(
                    f"| {name} | {shape} | {label} | {raw:,.1f} | {size / MB:,.1f} | {raw * MB / size:.1f} "
                    f"| {write:.3f} | {read:.3f} | {raw / write:,.0f} | {raw / read:,.0f} |",
                    flush=True,
                )
            del array


if __name__ == "__main__":
    main()
