"""Does overlap or a learner option pay on this machine? Each is measured against its baseline
in the same process, alternating, so that a noisy shared machine affects both alike.

- runtime: `inline` vs `threads` training the same preset for the same env steps (after
  learning starts), per env; env steps/s, and updates/s (the replay ratio fixes their ratio).
- learner: updates/s of distdqn's Learner on random batches of the preset's shapes, eager vs
  `placement.learner_compile`, `placement.learner_mixed_precision` and both.

    python benchmarks/learner_options.py [--part runtime learner] [--repeats 2] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distdqn.config import resolve_config
from distdqn.envs import env_spaces, policy_space
from distdqn.roles import Learner
from distdqn.run.train import train
from distdqn.types import SampleBatch

ENVS = {"CartPole-v1": 20_000, "MinAtar/Breakout-v1": 20_000, "ALE/Pong-v5": 8_000}
LEARNER_OPTIONS = {
    "eager": [],
    "compile": ["placement.learner_compile=true"],
    "bf16": ["placement.learner_mixed_precision=true"],
    "compile+bf16": ["placement.learner_compile=true", "placement.learner_mixed_precision=true"],
}


def training_rate(env_id: str, steps: int, runtime: str) -> dict[str, float]:
    """Env steps/s and updates/s of the loop from the first update to the end."""
    config = resolve_config(
        env_id,
        overrides=[
            f"total_steps={steps}",
            f"placement.runtime={runtime}",
            "logging.progress=false",
            "logging.tensorboard=false",
            "evaluation.every_steps=10000000",
            "checkpoint.every_steps=10000000",
            f"logging.every_steps={steps // 8}",
            "algorithm.learning_starts=1000",
            "replay.capacity=50000",
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        train(config, Path(directory) / "run")
        records = [json.loads(line) for line in (Path(directory) / "run" / "metrics.jsonl").read_text().splitlines()]
    learning = [r for r in records if "updates_per_s" in r and r["updates"] > 0][1:]  # skip the warm-up interval
    seconds = learning[-1]["wall_s"] - learning[0]["wall_s"]
    return {
        "env_steps_per_s": (learning[-1]["env_steps"] - learning[0]["env_steps"]) / seconds,
        "updates_per_s": (learning[-1]["updates"] - learning[0]["updates"]) / seconds,
    }


def runtime_part(repeats: int) -> dict[str, dict[str, float]]:
    report = {}
    for env_id, steps in ENVS.items():
        rates: dict[str, list[float]] = {"inline": [], "threads": []}
        for _ in range(repeats):
            for runtime in rates:
                rates[runtime].append(training_rate(env_id, steps, runtime)["env_steps_per_s"])
        inline, threads = statistics.median(rates["inline"]), statistics.median(rates["threads"])
        report[env_id] = {
            "inline_env_steps_per_s": inline,
            "threads_env_steps_per_s": threads,
            "threads_vs_inline": threads / inline,
            "runs": rates,
        }
        print(env_id, json.dumps(report[env_id]), flush=True)
    return report


def random_batches(config, count: int) -> list[SampleBatch]:
    frame_space, action_space = env_spaces(config.env)
    space = policy_space(config.env, frame_space)
    rng, size = np.random.default_rng(0), config.algorithm.batch_size

    def observations() -> np.ndarray:
        if space.dtype == np.uint8:
            return rng.integers(0, 256, (size, *space.shape), dtype=np.uint8)
        return rng.uniform(-1, 1, (size, *space.shape)).astype(space.dtype)

    return [
        SampleBatch(
            np.arange(size),
            np.arange(size),
            np.zeros(size, np.int64),
            observations(),
            rng.integers(action_space.n, size=size),
            rng.normal(size=size).astype(np.float32),
            np.full(size, 0.97, np.float32),
            observations(),
            np.ones(size, np.float32),
        )
        for _ in range(count)
    ]


def update_rate(learner: Learner, batches: list[SampleBatch], seconds: float) -> float:
    learner.update(0, batches)  # warm up (and compile)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        learner.update(0, batches)
        done += len(batches)
    return done / (time.perf_counter() - started)


def learner_part(repeats: int, seconds: float) -> dict[str, dict[str, float]]:
    report = {}
    for env_id in ENVS:
        config = resolve_config(env_id)
        frame_space, action_space = env_spaces(config.env)
        batches = random_batches(config, 8)
        learners = {
            name: Learner(
                resolve_config(env_id, overrides=overrides), policy_space(config.env, frame_space), action_space
            )
            for name, overrides in LEARNER_OPTIONS.items()
        }
        rates: dict[str, list[float]] = {name: [] for name in learners}
        for _ in range(repeats):
            for name, learner in learners.items():
                rates[name].append(update_rate(learner, batches, seconds))
        eager = statistics.median(rates["eager"])
        report[env_id] = {f"{name}_updates_per_s": statistics.median(r) for name, r in rates.items()}
        report[env_id].update({f"{name}_vs_eager": statistics.median(r) / eager for name, r in rates.items()})
        print(env_id, json.dumps(report[env_id]), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=["runtime", "learner"], default=["runtime", "learner"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    report = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if "learner" in args.part:
        report["learner"] = learner_part(args.repeats, args.seconds)
    if "runtime" in args.part:
        report["runtime"] = runtime_part(args.repeats)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
