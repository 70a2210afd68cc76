"""CartPole-v1 time-to-solve: distdqn's default preset vs Stable-Baselines3 (rl-zoo), same run.

Protocol (../shared/BENCHMARKS.md): every 2,000 env steps the greedy policy plays 10 episodes
on separately seeded envs; time-to-solve is the env steps and wall seconds (from the start of
learning, evaluation included) at the first evaluation with mean return >= 475. The systems
alternate seed by seed so that machine noise hits both alike.

    python benchmarks/cartpole_time_to_solve.py --seeds 0 1 2 [--skip-sb3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from distdqn.config import resolve_config
from distdqn.train import train

SOLVED_RETURN = 475.0


def run_distdqn_cartpole(seed: int, max_steps: int = 100_000, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train the CartPole preset until solved or `max_steps`; report steps and wall seconds."""
    config = resolve_config("CartPole-v1", overrides=[
        f"seed={seed}", f"total_steps={max_steps}", f"stop_return={SOLVED_RETURN}", "logging.progress=false",
        *(overrides or []),
    ])
    with tempfile.TemporaryDirectory() as directory:
        counters = train(config, Path(directory) / "run").counters
    solved = counters.solved_at_env_steps is not None
    return {
        "system": "distdqn",
        "seed": seed,
        "solved": solved,
        "steps_to_solve": counters.solved_at_env_steps,
        "wall_s": counters.solved_at_wall_s,
        "env_steps_per_s": counters.env_steps / counters.wall_s,
    }


def _median(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r["solved"]]
    return statistics.median(values) if len(values) == len(results) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--skip-sb3", action="store_true", help="only run distdqn")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="distdqn config override")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {"distdqn": [], "sb3": []}
    for seed in args.seeds:
        ours = run_distdqn_cartpole(seed, args.max_steps, args.overrides)
        print(json.dumps(ours), flush=True)
        results["distdqn"].append(ours)
        if not args.skip_sb3:
            from sb3_cartpole import run_sb3_cartpole

            theirs = run_sb3_cartpole(seed, args.max_steps)
            theirs.pop("evals")
            print(json.dumps(theirs), flush=True)
            results["sb3"].append(theirs)
    print("| system | seed | steps to solve | wall s | env steps/s |")
    print("|---|---|---|---|---|")
    for system, runs in results.items():
        for r in runs:
            wall = f"{r['wall_s']:.1f}" if r["solved"] else "-"
            print(f"| {system} | {r['seed']} | {r['steps_to_solve'] or 'not solved'} | {wall} | {r['env_steps_per_s']:.0f} |")
    if results["sb3"]:
        for key in ("steps_to_solve", "wall_s"):
            ours, theirs = _median(results["distdqn"], key), _median(results["sb3"], key)
            if ours is not None and theirs is not None:
                print(f"median {key}: distdqn {ours:.1f}, sb3 {theirs:.1f}, ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
