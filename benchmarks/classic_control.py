"""The classic-control presets against rl-zoo's tuned DQN, on seeds that took no part in the search.

rl-zoo's protocol (its benchmark.md): train for the zoo's budget, then play the final model
deterministically for many episodes. Here each seed trains its env's preset for the same budget
with the usual evaluation every `evaluation.every_steps` (10 greedy episodes), then its final
weights (`latest`) and its best checkpoint each play `--episodes` greedy episodes on fresh seeds.
Each run's row lands in `OUT/ENV/seed-N/score.json` (runs of other seeds can go on side by
side), and `report` prints per-env tables and an rliable
aggregate: IQM with stratified-bootstrap 95% intervals over zoo-normalized scores, where 0 is a
uniformly random policy and 1 is rl-zoo's figure.

    python benchmarks/classic_control.py run --env Acrobot-v1 --seeds 1000 1001 1002 1003 1004
    python benchmarks/classic_control.py report

A candidate is scored the same way before it becomes the preset, in a directory of its own:
`--out DIR run --env ENV --set KEY=VALUE [--set ...]`, then `--out DIR report`.

Each run keeps its metrics.jsonl and config.toml under OUT/ENV/seed-N (checkpoints, TensorBoard
files and the lock are dropped), which `distdqn plot` draws. rliable needs the `bench` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from distdqn.config import resolve_config
from distdqn.run.greedy import read_policy, score
from distdqn.run.train import train

OUT = Path(__file__).parent / "results" / "classic_control"
ZOO = {
    # env id: (rl-zoo DQN mean return, its env steps); benchmark.md of DLR-RM/rl-baselines3-zoo
    "Acrobot-v1": (-76.6, 100_000),
    "MountainCar-v0": (-100.8, 120_000),
    "LunarLander-v3": (154.4, 100_000),  # measured on LunarLander-v2, whose dynamics v3 keeps
}
EVAL_SEED_OFFSET = 1_000_000
"""Final evaluations start from seed + this: episodes neither training nor its evaluations saw."""


def random_return(env_id: str, episodes: int, seed: int = 0) -> float:
    """The mean return of uniformly random actions: the zero of the normalized score."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def _evaluations(run_dir: Path) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return [line for line in lines if "eval_return_mean" in line]


def run_seed(env_id: str, seed: int, episodes: int, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Train the env's preset (with `overrides`, a candidate's `--set` values) on `seed` for
    rl-zoo's budget and score it; its score.json."""
    zoo_return, budget = ZOO[env_id]
    config = resolve_config(
        env_id, overrides=[f"seed={seed}", f"total_steps={budget}", "logging.progress=none", *overrides]
    )
    run_dir = out / env_id / f"seed-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    counters = train(config, run_dir).counters
    evaluations = _evaluations(run_dir)
    reached = next((line for line in evaluations if line["eval_return_mean"] >= zoo_return), None)
    scores = {}
    for name in ("latest", "best"):
        policy_config, weights = read_policy(run_dir / "checkpoints" / name)
        scores[name] = score(policy_config, weights, episodes, seed + EVAL_SEED_OFFSET, run_dir).mean_return
    shutil.rmtree(run_dir / "checkpoints")
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    (run_dir / ".lock").unlink(missing_ok=True)  # the finished run's lock file: nothing holds it now
    return {
        "env": env_id,
        "seed": seed,
        "env_steps": counters.env_steps,
        "wall_s": round(counters.wall_s, 1),
        "best_eval_return": max(line["eval_return_mean"] for line in evaluations),
        "final_eval_return": evaluations[-1]["eval_return_mean"],
        "final_return": round(scores["latest"], 2),
        "best_checkpoint_return": round(scores["best"], 2),
        "episodes": episodes,
        "steps_to_zoo": None if reached is None else reached["env_steps"],
        "wall_s_to_zoo": None if reached is None else reached["wall_s"],
        "zoo_return": zoo_return,
    }


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("*/seed-*/score.json"))]


def _run(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    random_path = out / args.env / "random.json"
    if not random_path.exists():
        random_path.parent.mkdir(parents=True, exist_ok=True)
        random_path.write_text(
            json.dumps({"episodes": args.episodes, "mean_return": random_return(args.env, args.episodes)}) + "\n"
        )
    for seed in args.seeds:
        row = run_seed(args.env, seed, args.episodes, out, args.set)
        (out / args.env / f"seed-{seed}" / "score.json").write_text(json.dumps(row, indent=2) + "\n")
        print(json.dumps(row), flush=True)


def _iqm_interval(scores: np.ndarray, reps: int) -> tuple[float, float, float]:
    """rliable's IQM of a (runs x tasks) array with its stratified-bootstrap 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    points, intervals = rly.get_interval_estimates(
        {"distdqn": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps
    )
    return float(points["distdqn"][0]), float(intervals["distdqn"][0][0]), float(intervals["distdqn"][1][0])


def _report(args: argparse.Namespace) -> None:
    rows = _rows(args.out)
    randoms = {
        env: json.loads((args.out / env / "random.json").read_text())["mean_return"]
        for env in ZOO
        if (args.out / env / "random.json").exists()
    }
    envs = [env for env in ZOO if any(row["env"] == env for row in rows)]
    print("| env | seed | best eval (10 ep) | final return | best ckpt return | steps to zoo | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in sorted(rows, key=lambda row: (envs.index(row["env"]), row["seed"])):
        print(
            f"| {row['env']} | {row['seed']} | {row['best_eval_return']:.1f} | {row['final_return']:.1f} "
            f"| {row['best_checkpoint_return']:.1f} | {row['steps_to_zoo'] or '-'} | {row['wall_s']:.0f} |"
        )
    print("\n| env | zoo | random | IQM final [95% CI] | IQM best ckpt [95% CI] | seeds reaching zoo |")
    print("|---|---:|---:|---:|---:|---:|")
    normalized: dict[str, list[np.ndarray]] = {"final_return": [], "best_checkpoint_return": []}
    for env in envs:
        env_rows = [row for row in rows if row["env"] == env]
        zoo, low = ZOO[env][0], randoms[env]
        cells = []
        for key in normalized:
            values = np.array([[row[key]] for row in env_rows])
            cells.append("{:.1f} [{:.1f}, {:.1f}]".format(*_iqm_interval(values, args.reps)))
            normalized[key].append((values[:, 0] - low) / (zoo - low))
        reached = sum(row["final_return"] >= zoo for row in env_rows)
        print(f"| {env} | {zoo} | {low:.1f} | {cells[0]} | {cells[1]} | {reached}/{len(env_rows)} final |")
    runs = min(len(column) for column in normalized["final_return"])
    print("\nzoo-normalized IQM over every env (1.0 = rl-zoo's DQN, 0 = random), 95% stratified bootstrap:")
    for key, columns in normalized.items():
        table = np.stack([column[:runs] for column in columns], axis=1)
        print("  {}: {:.3f} [{:.3f}, {:.3f}]".format(key, *_iqm_interval(table, args.reps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score seeds of one env's preset")
    run.add_argument("--env", choices=sorted(ZOO), required=True)
    run.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003, 1004])
    run.add_argument("--episodes", type=int, default=100, help="greedy episodes of each final score")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a change to the preset (repeatable)"
    )
    report = commands.add_parser("report", help="tables and the rliable aggregate of every score.json")
    report.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    args = parser.parse_args()
    (_run if args.command == "run" else _report)(args)


if __name__ == "__main__":
    main()
