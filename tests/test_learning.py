"""Learning thresholds with fixed seeds: the presets must solve their envs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distdqn.config import resolve_config
from distdqn.envs import make_env
from distdqn.envs.maze import shortest_path_length
from distdqn.networks import build_q_network
from distdqn.run.train import train
from distdqn.storage.checkpoint import load_checkpoint

QUIET = ["logging.progress=false", "logging.tensorboard=false"]


def _greedy_network(checkpoint_dir: Path):
    checkpoint = load_checkpoint(checkpoint_dir)
    env = make_env(checkpoint.config.env)
    network = build_q_network(checkpoint.config.network, env.observation_space, env.action_space)
    network.load_state_dict(
        {k.removeprefix("online."): v for k, v in checkpoint.tensors.items() if k.startswith("online.")}
    )
    return env, network


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maze_greedy_policy_takes_a_shortest_path_within_20k_steps(tmp_path: Path, seed: int):
    # the shortest path's return is the only one this high: 13 steps at -0.01, then the goal's 1.0
    config = resolve_config(
        "distdqn/Maze-v0", overrides=QUIET + [f"seed={seed}", "total_steps=20000", "stop_return=0.87"]
    )
    counters = train(config, tmp_path / "run").counters
    assert counters.solved_at_env_steps is not None and counters.solved_at_env_steps <= 20_000

    # `best` holds exactly the weights whose evaluation reached the stop return (updates made
    # while that evaluation was in flight moved `latest` on)
    env, network = _greedy_network(tmp_path / "run" / "checkpoints" / "best")
    observation, _ = env.reset(seed=seed)
    for steps in range(1, 100):  # noqa: B007 (the step count is checked after the loop)
        with torch.no_grad():
            action = int(network(torch.as_tensor(observation)[None]).argmax())
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert terminated
    assert steps == shortest_path_length(env.unwrapped.layout) == 14


@pytest.mark.learning
def test_cartpole_solves_with_a_bfloat16_learner_and_on_threads(tmp_path: Path):
    """The speed options must not cost learning: the preset still solves within 50k steps with
    both on. (One run for the two: each was a run of its own, and either one costing learning
    fails this one; the bfloat16 learner is the same role on either runtime. Measured on a busy
    machine: solved at 12k, 49-67 s, where the two runs took 135 s and 55 s.)"""
    options = ["placement.learner_mixed_precision=true", "placement.runtime=threads"]
    config = resolve_config("CartPole-v1", overrides=QUIET + ["stop_return=475", *options])
    counters = train(config, tmp_path / "run").counters
    assert counters.solved_at_env_steps is not None and counters.solved_at_env_steps <= 50_000


def _assert_best_scores_on_fresh_episodes(run_dir: Path) -> None:
    """The best checkpoint is the solving policy: it scores on fresh episodes too (a mean of at
    least 400 over five)."""
    env, network = _greedy_network(run_dir / "checkpoints" / "best")
    returns = []
    for episode in range(5):
        observation, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(network(torch.as_tensor(observation)[None]).argmax())
            observation, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    assert np.mean(returns) >= 400


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2])
def test_cartpole_preset_solves_within_50k_steps(tmp_path: Path, seed: int):
    """Seeds 1 and 2 here; seed 0 is trained by test_cartpole_preset_stays_solved_to_50k_steps,
    which asserts the same of it (solved within 50k, by 30k even, and `best` scoring on fresh
    episodes): on the inline runtime stop_return only ends a run, so up to its first solve that
    run is the one this test would make with seed 0. Three seeds of the preset in all."""
    config = resolve_config("CartPole-v1", overrides=QUIET + [f"seed={seed}", "stop_return=475"])
    counters = train(config, tmp_path / "run").counters
    assert counters.solved_at_env_steps is not None and counters.solved_at_env_steps <= 50_000
    _assert_best_scores_on_fresh_episodes(tmp_path / "run")


@pytest.mark.learning
def test_cartpole_preset_stays_solved_to_50k_steps(tmp_path: Path):
    """Issue 8 item 10: trained on past its first solve (no stop_return), the preset's greedy
    policy is still solved at the end, so the last weights are as good as `best`. Seed 0 solved
    at 10k and held 500 in every evaluation from 22k on when measured (benchmarks/RESULTS.md).
    Also seed 0 of test_cartpole_preset_solves_within_50k_steps: solved by 30k, and `best` (the
    first evaluation at the top score) scores on fresh episodes."""
    config = resolve_config("CartPole-v1", overrides=QUIET + ["seed=0", "total_steps=50000"])
    train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["env_steps"], r["eval_return_mean"]) for r in records if "eval_return_mean" in r]
    first_solve = next(steps for steps, mean in evals if mean >= 475)
    assert first_solve <= 30_000
    last_steps, last_return = evals[-1]
    assert last_steps >= 50_000 and last_return >= 475
    _assert_best_scores_on_fresh_episodes(tmp_path / "run")
