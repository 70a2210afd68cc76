"""What storing the replay in a checkpoint costs: MB on disk and seconds to write and to read,
per codec, for replays shaped like CartPole (100k), MinAtar (100k) and Atari (1M frames), and the
time the training loop itself is held (the snapshot copy; the write runs on its own thread).

Run by hand from the repo root:

    .venv/bin/python benchmarks/snapshot_cost.py [--atari-transitions 1000000] [--codecs zstd lz4]
    .venv/bin/python benchmarks/snapshot_cost.py --training  # the slowdown of a training run

`--training` trains MinAtar Breakout (its preset: a 100k replay, 46 MB) inline with a checkpoint
every 5,000 env steps, with and without the replay in it, alternating, and compares wall times.

The replay is filled with synthetic steps through the real write path (lanes, n-step records,
priorities); Atari frames are 20,000 preprocessed Breakout frames of random play, tiled, so they
compress as real frames do, not as zeros.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distdqn.config import Config, EnvConfig, resolve_config
from distdqn.envs import make_env
from distdqn.replay.buffer import PrioritizedReplay
from distdqn.run.train import train
from distdqn.storage.checkpoint import load_resume_state, save_checkpoint

LANES = 4


def _frames(kind: str, rng: np.random.Generator, count: int, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "cartpole":
        return rng.normal(0, 1, (count, *shape)).astype(np.float32)
    if kind == "minatar":
        frames = np.zeros((count, *shape), bool)
        cells = rng.integers(0, shape[0], (count, 6, 2))
        channels = rng.integers(0, shape[2], (count, 6))
        rows = np.repeat(np.arange(count), 6)
        frames[rows, cells[..., 0].ravel(), cells[..., 1].ravel(), channels.ravel()] = True
        return frames
    played = _played_atari_frames()
    start = int(rng.integers(len(played)))
    return np.take(played, np.arange(start, start + count), axis=0, mode="wrap")


_PLAYED: list[np.ndarray] = []


def _played_atari_frames(count: int = 20_000) -> np.ndarray:
    """Preprocessed Breakout frames of random play: replay filled from them (tiled; zstd's window
    holds a few hundred frames, so tiling does not flatter the ratio) compresses as real data."""
    if not _PLAYED:
        env = make_env(EnvConfig(id="ALE/Breakout-v5", preprocessing="atari"))
        frames, _ = env.reset(seed=0)
        played = [frames]
        while len(played) < count:
            frames, _, terminated, truncated, _ = env.step(env.action_space.sample())
            played.append(frames)
            if terminated or truncated:
                played.append(env.reset()[0])
        _PLAYED.append(np.stack(played[:count]))
    return _PLAYED[0]


def filled_replay(kind: str, transitions: int, shape: tuple[int, ...], dtype: type) -> PrioritizedReplay:
    rng = np.random.default_rng(0)
    lane_capacity = transitions // LANES
    replay = PrioritizedReplay(LANES, lane_capacity, shape, np.dtype(dtype), 0.6, 1e-6, seed=0)
    chunk = 2048
    lanes = np.arange(LANES)
    for start in range(0, lane_capacity, chunk):
        steps = min(chunk, lane_capacity - start)
        observations = np.stack([_frames(kind, rng, steps, shape) for _ in lanes])
        positions = np.full(LANES, start)
        replay.write_steps(
            lanes, positions, observations, rng.integers(0, 4, (LANES, steps)), np.zeros((LANES, steps), np.int64), 3
        )
        done = np.arange(max(0, start - 3), start + steps - 3)
        replay.complete(
            np.repeat(lanes, len(done)),
            np.tile(done, LANES),
            rng.normal(0, 1, LANES * len(done)).astype(np.float32),
            np.full(LANES * len(done), 0.97, np.float32),
            np.full(LANES * len(done), 3),
            rng.random(LANES * len(done)),
        )
    return replay


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def measure(kind: str, transitions: int, shape: tuple[int, ...], dtype: type, codec: str) -> dict[str, float]:
    replay = filled_replay(kind, transitions, shape, dtype)
    raw = replay.nbytes
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        checkpoints = Path(scratch)
        started = time.perf_counter()
        snapshot = {"shards": [replay.snapshot()]}
        held = time.perf_counter() - started
        del replay
        gc.collect()
        started = time.perf_counter()
        link = save_checkpoint(checkpoints, "latest", Config(), {"w": torch.zeros(1)}, {}, resume=snapshot, codec=codec)
        written = time.perf_counter() - started
        on_disk = _size(checkpoints)
        del snapshot
        gc.collect()
        started = time.perf_counter()
        state = load_resume_state(link)
        assert state is not None
        fresh = PrioritizedReplay(LANES, transitions // LANES, shape, np.dtype(dtype), 0.6, 1e-6, seed=0)
        fresh.restore(state["shards"][0])
        read = time.perf_counter() - started
    return {"raw_mb": raw / 1e6, "disk_mb": on_disk / 1e6, "held_s": held, "write_s": written, "read_s": read}


def training_slowdown(steps: int, repeats: int) -> None:
    """Wall seconds of the same seeded run with and without replay snapshots in its checkpoints."""
    settings = ["checkpoint.every_steps=5000", "logging.tensorboard=false", "logging.progress=false"]
    settings += [f"total_steps={steps}", "algorithm.learning_starts=2000"]
    print("| repeat | replay in checkpoints | wall s | checkpoints |")
    print("|---|---|---|---|")
    for repeat in range(repeats):
        for replay in ("false", "true"):
            config = resolve_config("MinAtar/Breakout-v1", overrides=[*settings, f"checkpoint.replay={replay}"])
            with tempfile.TemporaryDirectory(dir=".") as scratch:
                result = train(config, Path(scratch) / "run")
            print(f"| {repeat} | {replay} | {result.counters.wall_s:.1f} | {steps // 5000} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atari-transitions", type=int, default=1_000_000)
    parser.add_argument("--codecs", nargs="+", default=["zstd", "lz4", "none"])
    parser.add_argument("--training", action="store_true", help="measure the slowdown of a training run instead")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.training:
        training_slowdown(args.steps, args.repeats)
        return
    cases = [
        ("cartpole", 100_000, (4,), np.float32),
        ("minatar", 100_000, (10, 10, 4), bool),
        ("atari", args.atari_transitions, (84, 84), np.uint8),
    ]
    columns = ["replay", "transitions", "codec", "MB in memory", "MB on disk", "loop held s"]
    columns += ["write s", "write MB/s", "read s", "read MB/s"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for kind, transitions, shape, dtype in cases:
        for codec in args.codecs:
            cost = measure(kind, transitions, shape, dtype, codec)
            print(
                f"| {kind} | {transitions:,} | {codec} | {cost['raw_mb']:,.1f} | {cost['disk_mb']:,.1f} | "
                f"{cost['held_s']:.2f} | {cost['write_s']:.2f} | {cost['raw_mb'] / cost['write_s']:,.0f} | "
                f"{cost['read_s']:.2f} | {cost['raw_mb'] / cost['read_s']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
