"""MinAtar end-to-end training throughput: the levers of the CPU pixel path, one at a time.

Each setup trains MinAtar/Breakout-v1 from the minatar preset with some fields changed and
reports env steps/s from the first update to the end (evaluations and checkpoints off, so only
acting, replay and learning count). Setups alternate, repeat by repeat, so that machine noise
hits them alike; the ratio is against the first setup of the same repeat.

    python benchmarks/minatar_throughput.py [--steps 20000] [--repeats 2] [--setups NAME ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from distdqn.config import resolve_config
from distdqn.run.train import train

ENV = "MinAtar/Breakout-v1"
PAPER = [  # Young & Tian's cadence with the minatar preset's targets before 2026-12-04 (3-step Double DQN)
    "algorithm.batch_size=32",
    "algorithm.replay_ratio=1.0",
    "algorithm.target_update_interval=1000",
    "algorithm.lr=2.5e-4",
    "placement.learner_mixed_precision=false",
    "env.num_envs=4",
    "algorithm.n_step=3",  # the targets of every setup measured before session 9
    "algorithm.double_dqn=true",
]
PAPER_TARGETS = ["algorithm.n_step=1", "algorithm.double_dqn=false"]
"""The MinAtar paper's own targets: one learner forward fewer per update than Double DQN's."""
BATCH_128 = [*PAPER, "algorithm.batch_size=128", "algorithm.replay_ratio=0.25"]
"""The same sample work as the paper's cadence in a quarter of the update calls."""
FAST = [*BATCH_128, "algorithm.lr=5e-4", "algorithm.target_update_interval=250"]
"""The fast cadence: BATCH_128 with its lr doubled and the target still every 1,000 env steps."""
SETUPS: dict[str, list[str]] = {
    "batch 32 every step, 4 envs": PAPER,
    "batch 128 every 4 steps, 4 envs": BATCH_128,
    "batch 128 every 4 steps, 8 envs": [*BATCH_128, "env.num_envs=8"],
    "batch 128 every 4 steps, 8 envs, threads": [*BATCH_128, "env.num_envs=8", "placement.runtime=threads"],
    "batch 128 every 4 steps, 8 envs, 2 torch threads": [*BATCH_128, "env.num_envs=8", "placement.torch_threads=2"],
    "batch 128 every 4 steps, bf16": [*BATCH_128, "placement.learner_mixed_precision=true"],
    "batch 64 every 4 steps": [*PAPER, "algorithm.batch_size=64", "algorithm.replay_ratio=0.25"],
    "batch 128 every 8 steps": [*PAPER, "algorithm.batch_size=128", "algorithm.replay_ratio=0.125"],
    "batch 32 every 4 steps": [*PAPER, "algorithm.replay_ratio=0.25"],
    "batch 32 every 4 steps, threads": [*PAPER, "algorithm.replay_ratio=0.25", "placement.runtime=threads"],
    "batch 32 every 4 steps, 8 envs, threads": [
        *PAPER,
        "algorithm.replay_ratio=0.25",
        "env.num_envs=8",
        "placement.runtime=threads",
    ],
    "fast cadence (its lr, target and bf16)": [*FAST, "placement.learner_mixed_precision=true"],
    "batch 32 every step, paper's targets": [*PAPER, *PAPER_TARGETS],
    "fast cadence, paper's targets, fp32": [*FAST, *PAPER_TARGETS],
    "fast cadence, paper's targets, bf16": [*FAST, *PAPER_TARGETS, "placement.learner_mixed_precision=true"],
    "fast cadence, paper's targets, bf16, threads": [
        *FAST,
        *PAPER_TARGETS,
        "placement.learner_mixed_precision=true",
        "placement.runtime=threads",
    ],
    "fast cadence, paper's targets, bf16, 2 torch threads": [
        *FAST,
        *PAPER_TARGETS,
        "placement.learner_mixed_precision=true",
        "placement.torch_threads=2",
    ],
}


def learning_rate_of_steps(overrides: list[str], steps: int) -> dict[str, float]:
    """Env steps/s and updates/s between the first logged update and the end of the run."""
    base = resolve_config(ENV)
    config = resolve_config(
        ENV,
        overrides=[
            f"total_steps={base.algorithm.learning_starts + steps}",
            "logging.progress=none",
            "logging.tensorboard=false",
            "logging.every_steps=1000",
            "evaluation.every_steps=10000000",
            "checkpoint.every_steps=10000000",
            *overrides,
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        train(config, Path(directory) / "run")
        lines = [json.loads(line) for line in (Path(directory) / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "env_steps_per_s" in line]
    first = next(line for line in logged if line["updates"] > 0)
    last = logged[-1]
    seconds = last["wall_s"] - first["wall_s"]
    return {
        "env_steps_per_s": (last["env_steps"] - first["env_steps"]) / seconds,
        "updates_per_s": (last["updates"] - first["updates"]) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps after learning starts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--setups", nargs="+", choices=sorted(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in args.setups}
    ratios: dict[str, list[float]] = {name: [] for name in args.setups}
    for repeat in range(args.repeats):
        for name in args.setups:
            measured = learning_rate_of_steps(SETUPS[name], args.steps)
            rates[name].append(measured["env_steps_per_s"])
            ratios[name].append(measured["env_steps_per_s"] / rates[args.setups[0]][repeat])
            print(json.dumps({"repeat": repeat, "setup": name, **measured}), flush=True)
    print(f"\n| setup | env steps/s (median of {args.repeats}) | / {args.setups[0]} |\n|---|---:|---:|")
    for name in args.setups:
        print(f"| {name} | {statistics.median(rates[name]):,.0f} | {statistics.median(ratios[name]):.2f} |")


if __name__ == "__main__":
    main()
