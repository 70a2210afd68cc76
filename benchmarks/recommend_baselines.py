"""Long-term engagement on distdqn/Recommend-v0: the random and myopic baselines against DQN checkpoints.

For each seed every policy meets the same users: episode k of seed s is reset with the seed of the
evaluator's env k under s, as `distdqn evaluate --seed s` plays them. A policy's score for a seed
is its mean return over `--episodes` sessions (total engagement time per session); the table gives
the mean over seeds with a 95% percentile-bootstrap interval of that mean (2,000 resamples of the
seeds, seeded; with few seeds it is rough), the engagement per step and the mean session length.
DQN plays greedily (epsilon 0) with the checkpoint's own env config, which the baselines then
share; without checkpoints the baselines play the default env with `--num-items` items.

    python benchmarks/recommend_baselines.py --num-items 1000 --seeds 0 1 2 --episodes 20
    python benchmarks/recommend_baselines.py --seeds 0 1 2 runs/rec-s0 runs/rec-s1 [--checkpoint best]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from distdqn.config import EnvConfig
from distdqn.envs import RECOMMEND_ID, make_env
from distdqn.envs.recommend_baselines import MyopicRecommender, RandomRecommender, Recommender, play_episode
from distdqn.roles import Evaluator
from distdqn.seeding import env_seeds
from distdqn.storage.checkpoint import load_checkpoint
from distdqn.types import Weights

BOOTSTRAP_SAMPLES = 2000


def ci95(values: list[float]) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of `values` (seeded: the same input, the same interval)."""
    samples = np.random.default_rng(0).choice(values, size=(BOOTSTRAP_SAMPLES, len(values)))
    low, high = np.percentile(samples.mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def checkpoint_dir(path: Path, which: str) -> Path:
    """A run directory's `checkpoints/<which>`, or `path` itself when it is a checkpoint."""
    return path / "checkpoints" / which if (path / "checkpoints").is_dir() else path


def same_env(a: EnvConfig, b: EnvConfig) -> bool:
    return (a.id, a.kwargs, a.max_episode_steps) == (b.id, b.kwargs, b.max_episode_steps)


def baseline_scores(env_config: EnvConfig, name: str, seed: int, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of `episodes` sessions of baseline `name` on the users of `seed`."""
    env = make_env(env_config)
    try:
        recommender: Recommender = (
            RandomRecommender(env.unwrapped.num_items, seed) if name == "random" else MyopicRecommender(env)
        )
        played = [play_episode(env, recommender, s) for s in env_seeds(seed, "evaluator", 0, episodes)]
    finally:
        env.close()
    returns, lengths = zip(*played, strict=True)
    return np.array(returns), np.array(lengths)


def dqn_scores(directory: Path, seed: int, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of the checkpoint's greedy policy on the users of `seed`."""
    checkpoint = load_checkpoint(directory)
    config = checkpoint.config
    online = {k.removeprefix("online."): v.numpy() for k, v in checkpoint.tensors.items() if k.startswith("online.")}
    evaluator = Evaluator(config.env, config.network, episodes, 0.0, config.evaluation.max_episode_steps)
    try:
        result = evaluator.evaluate(Weights(0, online), seed)
    finally:
        evaluator.env.close()
    return result.returns, result.lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories or checkpoint directories of DQN")
    parser.add_argument("--num-items", type=int, help="catalog size without checkpoints (default 1000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=20, help="sessions per seed and policy")
    parser.add_argument("--checkpoint", choices=["latest", "best"], default="latest", help="of a run directory")
    parser.add_argument("--out", type=Path, help="also write the scores as JSON")
    args = parser.parse_args()

    directories = [checkpoint_dir(path, args.checkpoint) for path in args.runs]
    configs = [load_checkpoint(directory).config.env for directory in directories]
    env_config = configs[0] if configs else EnvConfig(id=RECOMMEND_ID, kwargs={"num_items": args.num_items or 1000})
    if env_config.id != RECOMMEND_ID or not all(same_env(config, env_config) for config in configs):
        parser.error(f"every checkpoint must be of {RECOMMEND_ID} with one env config (kwargs and step limit)")
    probe = make_env(env_config)
    num_items = probe.unwrapped.num_items
    probe.close()
    if args.num_items is not None and args.num_items != num_items:
        parser.error(f"--num-items {args.num_items}, but the checkpoints were trained with {num_items} items")

    policies: dict[str, Any] = {
        "random": lambda seed: baseline_scores(env_config, "random", seed, args.episodes),
        "myopic (oracle)": lambda seed: baseline_scores(env_config, "myopic", seed, args.episodes),
    }
    for path, directory in zip(args.runs, directories, strict=True):
        policies[f"dqn {path}"] = lambda seed, directory=directory: dqn_scores(directory, seed, args.episodes)

    print(f"{RECOMMEND_ID}, {num_items:,} items, env.kwargs {env_config.kwargs}, seeds {args.seeds}, ", end="")
    print(f"{args.episodes} sessions each")
    print(f"{'policy':<40} {'return':>8} {'95% CI':>17} {'per step':>9} {'length':>7}")
    results = {}
    for name, play in policies.items():
        scores = [play(seed) for seed in args.seeds]
        means = [float(returns.mean()) for returns, _ in scores]
        per_step = sum(float(r.sum()) for r, _ in scores) / sum(float(n.sum()) for _, n in scores)
        length = float(np.mean([lengths.mean() for _, lengths in scores]))
        low, high = ci95(means)
        results[name] = {"return_mean": float(np.mean(means)), "ci95": [low, high], "per_seed": means}
        results[name] |= {"engagement_per_step": per_step, "length_mean": length}
        interval = f"[{low:.1f}, {high:.1f}]"
        print(f"{name:<40} {np.mean(means):>8.1f} {interval:>17} {per_step:>9.2f} {length:>7.1f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"env_kwargs": env_config.kwargs, "seeds": args.seeds, "results": results}))


if __name__ == "__main__":
    main()
