"""highway-fast-v0: Stable-Baselines3 DQN with highway-env's published script against distdqn's preset.

Why: the preset (src/distdqn/presets/highway-fast-v0.toml) maps the hyperparameters of highway-env's
own DQN script, scripts/sb3_highway_dqn.py in Farama-Foundation/HighwayEnv, onto distdqn; this
runs both under one protocol, so the two numbers can sit side by side.

Protocol:
* Both systems train for `--steps` env steps (20,000: the script's `learn(total_timesteps=int(2e4))`)
  on one env, with the same seeds, one torch thread each, on the CPU.
* SB3 gets the script's hyperparameters (`SCRIPT_HYPERPARAMS`) and SB3's defaults for the rest;
  distdqn gets the preset. In both, epsilon falls from 1 to 0.05 over `--exploration-fraction` of
  the run (SB3's default 0.1, which the script keeps; its notebook sets 0.7).
* Each system keeps its policy every `--eval-every` env steps (2,000) and at the end. After training,
  every kept policy plays `--eval-episodes` (10) greedy episodes on the same seeded envs
  (`greedy_eval.GreedyEvaluator` for the run's seed: the same start states for both systems), so
  evaluation costs neither system training time. distdqn's own evaluation cannot be switched off:
  it is cut to one episode, at the end.
* Wall seconds are training only: SB3's `learn`, distdqn's training loop (`counters.wall_s`, after
  the roles are built); env steps/s is env steps over those seconds.
* The systems alternate seed by seed, so that machine noise hits both alike.

    python benchmarks/highway_side_by_side.py --seeds 0 1 2

prints one JSON line per run, then the final return (mean and spread over seeds), env steps/s and
wall seconds of each system, and both learning curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import highway_env
import numpy as np
import torch
from greedy_eval import GreedyEvaluator
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from distdqn.config import Config, resolve_config
from distdqn.envs import env_spaces, policy_space
from distdqn.networks import build_q_network, load_weights
from distdqn.run.train import train
from distdqn.storage.checkpoint import load_checkpoint

gym.register_envs(highway_env)

ENV_ID = "highway-fast-v0"

SCRIPT_HYPERPARAMS: dict[str, Any] = {
    "policy": "MlpPolicy",
    "policy_kwargs": {"net_arch": [256, 256]},
    "learning_rate": 5e-4,
    "buffer_size": 15_000,
    "learning_starts": 200,
    "batch_size": 32,
    "gamma": 0.8,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 50,
}
"""scripts/sb3_highway_dqn.py (HighwayEnv, unchanged since 2021-09), without its logging and video
arguments (tensorboard_log, render_mode): they do not change what is learned."""

SB3_DEFAULT_EXPLORATION_FRACTION = 0.1


class PolicySnapshots(BaseCallback):
    """Copies SB3's policy weights every `every` env steps, to be evaluated after training."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.kept: dict[int, dict[str, torch.Tensor]] = {}

    def keep(self, env_steps: int) -> None:
        self.kept[env_steps] = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self.keep(self.num_timesteps)
        return True


def run_sb3(seed: int, steps: int, eval_every: int, exploration_fraction: float, evaluator: GreedyEvaluator) -> dict:
    """Train SB3 with the script's hyperparameters; evaluate its kept policies afterwards."""
    torch.set_num_threads(1)
    env = gym.make(ENV_ID)
    model = DQN(
        env=env,
        exploration_fraction=exploration_fraction,
        seed=seed,
        device="cpu",
        verbose=0,
        **SCRIPT_HYPERPARAMS,
    )
    snapshots = PolicySnapshots(eval_every)
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=snapshots)
    wall_s = time.perf_counter() - start
    env.close()
    if model.num_timesteps not in snapshots.kept:
        snapshots.keep(model.num_timesteps)
    start = time.perf_counter()
    evals = []
    for env_steps, state in sorted(snapshots.kept.items()):
        model.policy.load_state_dict(state)
        evals.append((env_steps, evaluator.returns(model)))
    return _result("sb3", seed, model.num_timesteps, wall_s, evals, time.perf_counter() - start)


class DistdqnGreedy:
    """distdqn's online Q-network behind the `predict` that GreedyEvaluator calls."""

    def __init__(self, config: Config) -> None:
        frame_space, action_space = env_spaces(config.env)
        self.network = build_q_network(config.network, policy_space(config.env, frame_space), action_space)

    def load(self, tensors: dict[str, np.ndarray]) -> None:
        load_weights(self.network, tensors)

    def predict(self, observation: np.ndarray, *, deterministic: bool = True) -> tuple[np.ndarray, None]:
        with torch.inference_mode():
            return self.network(torch.as_tensor(observation)).argmax(dim=1).numpy(), None


def _kept_online_weights(run_dir: Path) -> dict[int, dict[str, np.ndarray]]:
    """The online network of every `latest` version the run kept, by env step."""
    kept = {}
    for version in (run_dir / "checkpoints").glob(".latest-*"):
        if version.is_symlink() or not version.is_dir():
            continue
        checkpoint = load_checkpoint(version)
        online = {
            name.removeprefix("online."): tensor.numpy()
            for name, tensor in checkpoint.tensors.items()
            if name.startswith("online.")
        }
        kept[checkpoint.state["counters"]["env_steps"]] = online
    return kept


def run_distdqn(
    seed: int, steps: int, eval_every: int, exploration_fraction: float, evaluator: GreedyEvaluator
) -> dict:
    """Train the preset, keeping `latest` every `eval_every` env steps; evaluate those afterwards."""
    config = resolve_config(
        ENV_ID,
        overrides=[
            f"seed={seed}",
            f"total_steps={steps}",
            f"algorithm.eps_decay_steps={max(1, round(exploration_fraction * steps))}",
            f"checkpoint.every_steps={eval_every}",
            f"checkpoint.keep={steps // eval_every + 2}",  # every version, and the final one
            "checkpoint.replay=false",
            f"evaluation.every_steps={steps}",
            "evaluation.episodes=1",
            "logging.progress=false",
            "logging.tensorboard=false",
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "run"
        counters = train(config, run_dir).counters
        kept = _kept_online_weights(run_dir)
    start = time.perf_counter()
    policy = DistdqnGreedy(config)
    evals = []
    for env_steps, tensors in sorted(kept.items()):
        policy.load(tensors)
        evals.append((env_steps, evaluator.returns(policy)))
    return _result("distdqn", seed, counters.env_steps, counters.wall_s, evals, time.perf_counter() - start)


def _result(
    system: str, seed: int, env_steps: int, wall_s: float, evals: list[tuple[int, np.ndarray]], eval_s: float
) -> dict:
    """One run's line; `eval_s`: the protocol's evaluation of its kept policies, after training."""
    means = [float(returns.mean()) for _, returns in evals]
    return {
        "system": system,
        "seed": seed,
        "env_steps": env_steps,
        "wall_s": round(wall_s, 2),
        "env_steps_per_s": round(env_steps / wall_s, 1),
        "final_return": means[-1],
        "best_return": max(means),
        "eval_s": round(eval_s, 1),
        "evals": [[steps, round(float(r.mean()), 3), round(float(r.std()), 3)] for steps, r in evals],
    }


def _spread(values: list[float]) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +/- {deviation:.2f} ({min(values):.2f}-{max(values):.2f})"


def _print_tables(results: dict[str, list[dict]]) -> None:
    print("| system | seeds | final return, mean +/- sd over seeds (min-max) | best eval | env steps/s | wall s |")
    print("|---|---|---|---|---|---|")
    for system, runs in results.items():
        print(
            f"| {system} | {len(runs)} | {_spread([r['final_return'] for r in runs])} "
            f"| {_spread([r['best_return'] for r in runs])} "
            f"| {statistics.median(r['env_steps_per_s'] for r in runs):.1f} "
            f"| {statistics.median(r['wall_s'] for r in runs):.1f} |"
        )
    curves = {system: _mean_curve(runs) for system, runs in results.items()}
    print()
    print("| env steps | " + " | ".join(f"{system} mean return" for system in curves) + " |")
    print("|---" * (len(curves) + 1) + "|")
    for steps in sorted({steps for curve in curves.values() for steps in curve}):
        cells = [f"{curve[steps]:.2f}" if steps in curve else "-" for curve in curves.values()]
        print(f"| {steps} | " + " | ".join(cells) + " |")


def _mean_curve(runs: list[dict]) -> dict[int, float]:
    """Mean over seeds of the evaluation at each env step that every seed evaluated."""
    points: dict[int, list[float]] = {}
    for run in runs:
        for steps, mean, _ in run["evals"]:
            points.setdefault(steps, []).append(mean)
    return {steps: statistics.mean(means) for steps, means in points.items() if len(means) == len(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps of each run")
    parser.add_argument("--eval-every", type=int, default=2_000, help="env steps between kept policies")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--exploration-fraction", type=float, default=SB3_DEFAULT_EXPLORATION_FRACTION)
    parser.add_argument("--systems", nargs="+", default=["sb3", "distdqn"], choices=["sb3", "distdqn"])
    args = parser.parse_args()
    runners = {"sb3": run_sb3, "distdqn": run_distdqn}
    results: dict[str, list[dict]] = {system: [] for system in args.systems}
    for seed in args.seeds:
        for system in args.systems:  # systems alternate seed by seed: noise hits both alike
            evaluator = GreedyEvaluator(seed, ENV_ID, args.eval_episodes)  # the same starts for both
            try:
                result = runners[system](seed, args.steps, args.eval_every, args.exploration_fraction, evaluator)
            finally:
                evaluator.close()
            print(json.dumps(result), flush=True)
            results[system].append(result)
    _print_tables(results)


if __name__ == "__main__":
    main()
