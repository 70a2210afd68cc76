"""PBT against random search: same search space, same trials, same env steps per trial.

Each task runs `distdqn tune` once per scheduler and search seed. Both schedulers draw the trials'
starting values with the same seed (Tune's BasicVariantGenerator), so they start from the same
points; the only difference is PBT's exploit (copy a better trial's checkpoint) and explore
(perturb its hyperparameters) at every interval. Reported per run, from DIR/tune.jsonl: the best
and the mean over trials of the final evaluation return, the first env steps (of one trial) and
wall seconds (of the whole search) at which any trial's evaluation reached the threshold, the env
steps of all trials together, the search's wall seconds and PBT's exploits.

    python benchmarks/pbt_vs_random.py --task cartpole-poor --seeds 0 1 --out DIR
    python benchmarks/pbt_vs_random.py --task maze-11 --task maze-12 --seeds 0 --out DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from distdqn.envs.maze import random_layout, shortest_path_length

QUIET = ["logging.tensorboard=false", "logging.progress=false"]


def _maze_task(layout_seed: int, size: int = 10, total_steps: int = 20_000) -> dict[str, Any]:
    path = shortest_path_length(random_layout(size, 0.25, np.random.default_rng(layout_seed)))
    assert path is not None
    return {
        "env": "distdqn/Maze-v0",
        "set": [
            f"env.kwargs={{observation: onehot, size: {size}, layout_seed: {layout_seed}}}",
            f"replay.capacity={total_steps}",
        ],
        "params": [
            "algorithm.lr=loguniform(1e-4,3e-3)",
            "algorithm.gamma=uniform(0.8,0.99)",
            "algorithm.target_update_interval=randint(50,1000)",
        ],
        "total_steps": total_steps,
        "interval": total_steps // 10,
        "threshold": round(1.0 - 0.01 * (path - 1), 4),  # the shortest path's return
    }


TASKS: dict[str, dict[str, Any]] = {
    # a poor base: a learning rate too small to learn in the budget, a rare target update
    "cartpole-poor": {
        "env": "CartPole-v1",
        "set": ["algorithm.lr=1e-5", "algorithm.lr_end=null", "algorithm.target_update_interval=2000"],
        "params": ["algorithm.lr=loguniform(1e-5,3e-3)", "algorithm.target_update_interval=randint(50,2000)"],
        "total_steps": 30_000,
        "interval": 3_000,
        "threshold": 475.0,
    },
    "maze-11": _maze_task(11),
    "maze-12": _maze_task(12),
    "maze-13-size-14": _maze_task(13, size=14, total_steps=30_000),
}


def run_search(task: dict[str, Any], scheduler: str, seed: int, trials: int, tune_dir: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "distdqn",
        "tune",
        "--env",
        task["env"],
        "--scheduler",
        scheduler,
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--total-steps",
        str(task["total_steps"]),
        "--interval",
        str(task["interval"]),
        "--run-dir",
        str(tune_dir),
        "--quiet",
    ]
    for param in task["params"]:
        command += ["--param", param]
    for override in [*task["set"], *QUIET]:
        command += ["--set", override]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return summarize(tune_dir, task["threshold"], wall)


def summarize(tune_dir: Path, threshold: float, wall_s: float) -> dict[str, Any]:
    log = [json.loads(line) for line in (tune_dir / "tune.jsonl").read_text().splitlines()]
    final: dict[str, dict[str, Any]] = {}
    for record in log:
        final[record["trial"]] = record  # reports arrive in order per trial
    returns = [record["eval_return"] for record in final.values()]
    reached = [record for record in log if record["eval_return"] is not None and record["eval_return"] >= threshold]
    return {
        "best_final_return": max(returns),
        "mean_final_return": float(np.mean(returns)),
        "first_reached_env_steps": min((r["env_steps"] for r in reached), default=None),
        "first_reached_wall_s": min((r["wall_s"] for r in reached), default=None),
        "env_steps_all_trials": sum(record["env_steps"] for record in final.values()),
        "wall_s": round(wall_s, 1),
        "exploits": sum(record["restored_from"] is not None for record in log),
        "best_params": max(final.values(), key=lambda record: record["eval_return"])["params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True, help="directory for the tune runs and results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.task:
        for seed in args.seeds:
            for scheduler in ("pbt", "random"):
                tune_dir = args.out / f"{name}-{scheduler}-s{seed}"
                row = {"task": name, "scheduler": scheduler, "seed": seed, "threshold": TASKS[name]["threshold"]}
                row |= run_search(TASKS[name], scheduler, seed, args.trials, tune_dir)
                rows.append(row)
                print(json.dumps(row), flush=True)
                (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| task | scheduler | seed | best final | mean final | first >= threshold (steps / s) | exploits | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        first = (
            "never"
            if row["first_reached_env_steps"] is None
            else f"{row['first_reached_env_steps']} / {row['first_reached_wall_s']:.0f}"
        )
        print(
            f"| {row['task']} (>= {row['threshold']}) | {row['scheduler']} | {row['seed']} | "
            f"{row['best_final_return']:.2f} | {row['mean_final_return']:.2f} | {first} | {row['exploits']} | "
            f"{row['wall_s']} |"
        )


if __name__ == "__main__":
    main()
