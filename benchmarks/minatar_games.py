"""MinAtar runs side by side: greedy returns along training and the final training return, per run.

The MinAtar paper (Young & Tian 2019) plots *training* returns (epsilon-greedy, smoothed over
episodes, 30 seeds, 5M frames). Each run here trains the minatar preset for 1M env steps; this
script reads its metrics.jsonl and reports, per run: the greedy evaluation return at every
`--every` env steps (`evaluation.episodes` greedy episodes each), the training return as the mean
over the episodes that ended in the last `--every` env steps (weighted by their count), and the
run's env steps/s from its first update to its end.

    for game in Asterix Breakout Freeway Seaquest SpaceInvaders; do
      distdqn train --env MinAtar/$game-v1 --seed 0 --total-steps 1000000 --run-dir runs/minatar-$game-s0 \\
          --quiet --set logging.tensorboard=false
    done
    python benchmarks/minatar_games.py runs/minatar-*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from distdqn.config import Config
from distdqn.config.resolve import load_config_toml


def read_run(run_dir: Path) -> tuple[Config, list[dict[str, Any]]]:
    """The run's config and its metrics lines."""
    config = load_config_toml(run_dir / "config.toml")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return config, lines


def training_return(lines: list[dict[str, Any]], since: int) -> float | None:
    """Mean return of the training episodes that ended after env step `since`: each training line's
    mean weighted by the episodes it covers."""
    training = [line for line in lines if "episode_return_mean" in line]
    total, episodes, before = 0.0, 0, 0
    for line in training:
        covered = line["episodes"] - before
        if line["env_steps"] > since and covered > 0:
            total += line["episode_return_mean"] * covered
            episodes += covered
        before = line["episodes"]
    return total / episodes if episodes else None


def throughput(lines: list[dict[str, Any]]) -> float:
    """Env steps/s from the first training line with updates to the last line."""
    first = next(line for line in lines if line.get("updates", 0) > 0 and "env_steps_per_s" in line)
    last = lines[-1]
    return (last["env_steps"] - first["env_steps"]) / (last["wall_s"] - first["wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=100_000, help="env steps between reported evaluations")
    args = parser.parse_args()
    rows = []
    for run_dir in args.runs:
        config, lines = read_run(run_dir)
        evaluations = {
            line["env_steps"] // args.every: line["eval_return_mean"] for line in lines if "eval_return_mean" in line
        }
        end = lines[-1]["env_steps"]
        rows.append(
            {
                "run": str(run_dir),
                "env": config.env.id,
                "seed": config.seed,
                "env_steps": end,
                "greedy": {str(k * args.every): round(v, 2) for k, v in sorted(evaluations.items()) if k > 0},
                "training_return_last": training_return(lines, end - args.every),
                "env_steps_per_s": round(throughput(lines), 1),
                "wall_s": round(lines[-1]["wall_s"], 1),
            }
        )
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
