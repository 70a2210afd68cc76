"""CartPole-v1 staying solved: does the greedy policy stay >= 475 once it got there?

Protocol (../shared/BENCHMARKS.md): every 2,000 env steps the greedy policy plays 10 episodes on
separately seeded envs. Each seed trains the CartPole preset (plus any `--set` overrides) for the
whole budget, without stop_return, and the table reports per seed: env steps to the first solve
(first evaluation with mean return >= 475), how many of the later evaluations stay >= 475, the
lowest later evaluation, the last evaluation, and the wall seconds of the whole run. It also
replays the final weights greedily on 20 fresh episodes and counts how they end: truncated at
500 steps, the cart off the track (|x| > 2.4) or the pole down.

    python benchmarks/cartpole_stability.py --seeds 0 1 2 3 4 [--set algorithm.lr_end=2.3e-4] \
        [--jobs 2] [--runs-dir DIR] [--out results.json]
    python benchmarks/cartpole_stability.py --from-runs /tmp/base-s0 /tmp/base-s1  # tabulate runs

With `--jobs 2` two seeds train side by side (one torch thread each), so their wall seconds are
those of a shared machine; compare variants measured the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distdqn.config import resolve_config
from distdqn.envs import make_env
from distdqn.networks import build_q_network
from distdqn.run.train import train
from distdqn.storage.checkpoint import load_checkpoint

SOLVED_RETURN = 475.0


def summarize(run_dir: Path) -> dict[str, Any]:
    """Steps to the first solve, later evaluations >= 475, and the last evaluation of one run."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["env_steps"], r["eval_return_mean"]) for r in records if "eval_return_mean" in r]
    first = next((i for i, (_, mean) in enumerate(evals) if mean >= SOLVED_RETURN), None)
    later = [mean for _, mean in evals[first + 1 :]] if first is not None else []
    return {
        "steps_to_solve": evals[first][0] if first is not None else None,
        "later_evals": len(later),
        "later_solved": sum(mean >= SOLVED_RETURN for mean in later),
        "later_min": min(later) if later else None,
        "last_eval": evals[-1][1],
        "last_eval_steps": evals[-1][0],
        "wall_s": max(r["wall_s"] for r in records),
        "final_endings": episode_endings(run_dir),
        "evals": evals,
    }


def episode_endings(run_dir: Path, episodes: int = 20) -> dict[str, int]:
    """How the final (latest) weights' greedy episodes end: `truncated` (500 steps), `cart`
    (the cart left the track, |x| > 2.4) or `pole` (the pole fell past 12 degrees)."""
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest")
    env = make_env(checkpoint.config.env)
    network = build_q_network(checkpoint.config.network, env.observation_space, env.action_space)
    network.load_state_dict(
        {k.removeprefix("online."): v for k, v in checkpoint.tensors.items() if k.startswith("online.")}
    )
    endings = {"truncated": 0, "cart": 0, "pole": 0}
    for episode in range(episodes):
        observation, _ = env.reset(seed=20_000 + episode)
        terminated = truncated = False
        while not (terminated or truncated):
            with torch.no_grad():
                action = int(network(torch.as_tensor(observation)[None]).argmax())
            observation, _, terminated, truncated, _ = env.step(action)
        kind = "truncated" if not terminated else "cart" if abs(float(np.asarray(observation)[0])) > 2.4 else "pole"
        endings[kind] += 1
    return endings


def run_seed(seed: int, total_steps: int, overrides: list[str], runs_dir: str | None) -> dict[str, Any]:
    """Train one seed to `total_steps` (no early stop) and summarize its evaluations."""
    config = resolve_config(
        "CartPole-v1",
        overrides=[
            f"seed={seed}",
            f"total_steps={total_steps}",
            "logging.progress=false",
            "logging.tensorboard=false",
            *overrides,
        ],
    )
    if runs_dir is not None:
        run_dir = Path(runs_dir) / f"s{seed}"
        train(config, run_dir)
        return {"seed": seed, **summarize(run_dir)}
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "run"
        train(config, run_dir)
        return {"seed": seed, **summarize(run_dir)}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| seed | steps to first solve | later evals >= 475 | lowest later | last eval | final weights' "
        "episodes: 500 / cart off / pole down | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        solve = f"{r['steps_to_solve']:,}" if r["steps_to_solve"] is not None else "not solved"
        lowest = f"{r['later_min']:.0f}" if r["later_min"] is not None else "-"
        ends = r["final_endings"]
        lines.append(
            f"| {r['seed']} | {solve} | {r['later_solved']}/{r['later_evals']} | {lowest} "
            f"| {r['last_eval']:.0f} | {ends['truncated']} / {ends['cart']} / {ends['pole']} "
            f"| {r['wall_s']:.0f} |"
        )
    solved = [r["steps_to_solve"] for r in results if r["steps_to_solve"] is not None]
    later = sum(r["later_evals"] for r in results)
    share = sum(r["later_solved"] for r in results) / later if later else 0.0
    median = f"{statistics.median(solved):,.0f}" if solved else "-"
    lines.append(
        f"\nsolved {len(solved)}/{len(results)} seeds, median first solve {median} steps; "
        f"later evals >= 475: {share:.0%}; last eval >= 475 on "
        f"{sum(r['last_eval'] >= SOLVED_RETURN for r in results)}/{len(results)} seeds"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="distdqn config override")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained side by side (processes)")
    parser.add_argument("--runs-dir", help="keep each seed's run in RUNS_DIR/s<seed> (default: temporary)")
    parser.add_argument("--from-runs", nargs="+", type=Path, help="only tabulate these finished run dirs")
    parser.add_argument("--out", type=Path, help="also write the per-seed results as JSON")
    args = parser.parse_args()
    if args.from_runs:
        results = [{"seed": resolve_seed(run_dir), **summarize(run_dir)} for run_dir in args.from_runs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(run_seed, seed, args.total_steps, args.overrides, args.runs_dir) for seed in args.seeds
            ]
            results = []
            for future in futures:
                results.append(future.result())
                print(json.dumps({k: v for k, v in results[-1].items() if k != "evals"}), flush=True)
    if not args.from_runs:
        print(f"overrides: {args.overrides or 'none (the preset)'}")
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps({"overrides": args.overrides, "results": results}, indent=1))


def resolve_seed(run_dir: Path) -> int:
    """The seed a finished run was trained with, from its config.toml."""
    from distdqn.config import load_config_toml

    return load_config_toml(run_dir / "config.toml").seed


if __name__ == "__main__":
    main()
