"""CartPole-v1 time-to-solve: distdqn's default preset vs Stable-Baselines3 (rl-zoo), same run.

Protocol (../shared/BENCHMARKS.md): every 2,000 env steps the greedy policy plays 10 episodes
on separately seeded envs; time-to-solve is the env steps and wall seconds (from the start of
learning, evaluation included) at the first evaluation with mean return >= 475. The systems
alternate seed by seed so that machine noise hits both alike.

    python benchmarks/cartpole_time_to_solve.py --seeds 0 1 2 [--systems distdqn distdqn-ray sb3 cleanrl-style]

`distdqn-ray` is the same preset on an embedded Ray cluster with 2 actors (16 vector steps per
collect call); its seconds count from the start of learning, as for the others, not the cluster
start (about 3 s more).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from distdqn.config import resolve_config
from distdqn.run.train import train

SOLVED_RETURN = 475.0


def run_distdqn_cartpole(seed: int, max_steps: int = 100_000, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train the CartPole preset until solved or `max_steps`; report steps and wall seconds."""
    config = resolve_config(
        "CartPole-v1",
        overrides=[
            f"seed={seed}",
            f"total_steps={max_steps}",
            f"stop_return={SOLVED_RETURN}",
            "logging.progress=false",
            *(overrides or []),
        ],
    )
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


RAY_OVERRIDES = ["placement.runtime=ray", "placement.num_actors=2", "placement.actor_steps_per_call=16"]


def _runner(system: str, max_steps: int, overrides: list[str]):
    if system == "distdqn":
        return lambda seed: run_distdqn_cartpole(seed, max_steps, overrides)
    if system == "distdqn-ray":
        return lambda seed: {**run_distdqn_cartpole(seed, max_steps, RAY_OVERRIDES + overrides), "system": system}
    if system == "sb3":
        from sb3_cartpole import run_sb3_cartpole

        return lambda seed: {k: v for k, v in run_sb3_cartpole(seed, max_steps).items() if k != "evals"}
    from cleanrl_style_dqn import run_cleanrl_style_cartpole

    return lambda seed: run_cleanrl_style_cartpole(seed, max(max_steps, 500_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument(
        "--systems", nargs="+", default=["distdqn", "sb3"], choices=["distdqn", "distdqn-ray", "sb3", "cleanrl-style"]
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="distdqn config override")
    args = parser.parse_args()
    runners = {system: _runner(system, args.max_steps, args.overrides) for system in args.systems}
    results: dict[str, list[dict[str, Any]]] = {system: [] for system in args.systems}
    for seed in args.seeds:
        for system, run in runners.items():  # systems alternate seed by seed: noise hits all alike
            result = run(seed)
            print(json.dumps(result), flush=True)
            results[system].append(result)
    print("| system | seed | steps to solve | wall s | env steps/s |")
    print("|---|---|---|---|---|")
    for system, runs in results.items():
        for r in runs:
            wall = f"{r['wall_s']:.1f}" if r["solved"] else "-"
            print(
                f"| {system} | {r['seed']} | {r['steps_to_solve'] or 'not solved'} | {wall} "
                f"| {r['env_steps_per_s']:.0f} |"
            )
    baseline = "sb3" if "sb3" in results else None
    for system in results:
        if baseline is None or system == baseline:
            continue
        for key in ("steps_to_solve", "wall_s"):
            ours, theirs = _median(results[system], key), _median(results[baseline], key)
            if ours is not None and theirs is not None:
                print(f"median {key}: {system} {ours:.1f}, {baseline} {theirs:.1f}, ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
