"""Throughput of the inline and Ray runtimes on the same work, and what Ray itself costs.

Every setup trains the CartPole preset for the same number of env steps with the same collect
size, so the difference between inline and Ray with one actor is the runtime's overhead. The
`unlimited` rows let actors and learner run free (Ape-X), which shows each role's own rate.

    python benchmarks/runtime_throughput.py [--steps 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from distdqn.config import resolve_config
from distdqn.run.train import train

SETUPS: dict[str, list[str]] = {
    "inline, 1 actor": ["placement.runtime=inline"],
    "ray, 1 actor": ["placement.runtime=ray"],
    "ray, 2 actors": ["placement.runtime=ray", "placement.num_actors=2"],
    "ray, 2 actors, unlimited": [
        "placement.runtime=ray",
        "placement.num_actors=2",
        "placement.rate_limit=unlimited",
        "placement.max_update_lag=64",
    ],
}


def run_setup(overrides: list[str], steps: int, steps_per_call: int) -> dict[str, Any]:
    config = resolve_config(
        "CartPole-v1",
        overrides=[
            f"total_steps={steps}",
            f"placement.actor_steps_per_call={steps_per_call}",
            "logging.progress=false",
            "logging.tensorboard=false",
            "evaluation.every_steps=1000000",
            "checkpoint.every_steps=1000000",
            f"logging.every_steps={steps // 4}",
            *overrides,
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        counters = train(config, Path(directory) / "run").counters
        total = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(directory) / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "env_steps_per_s" in r][-1]
    roles = {k: v for k, v in last.items() if k.startswith(("actor_", "shard_", "learner_", "weight_lag"))}
    return {
        "env_steps_per_s": counters.env_steps / counters.wall_s,
        "updates_per_s": counters.updates / counters.wall_s,
        "loop_s": counters.wall_s,
        "total_s": total,
        "updates": counters.updates,
        "roles_last_interval": roles,
    }


def _ray_processes_rss() -> int:
    """Resident bytes of every process that Ray started (not this driver)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "/ray/" in command or command.startswith("ray::") or "site-packages/ray" in command:
            rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            total += rss_kb * 1024
    return total


def ray_costs() -> dict[str, float]:
    """Embedded cluster start and stop time, and the memory of Ray's own processes."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from distdqn.config import PlacementConfig
    from distdqn.runtime.ray import RayRuntime, ray

    started = time.perf_counter()
    runtime = RayRuntime(PlacementConfig(runtime="ray"))
    up = time.perf_counter() - started
    time.sleep(2.0)
    rss = _ray_processes_rss()
    started = time.perf_counter()
    runtime.shutdown()
    down = time.perf_counter() - started
    assert not ray.is_initialized()
    return {"init_s": up, "shutdown_s": down, "ray_processes_rss_mb": rss / 2**20}


def role_rates(seconds: float = 3.0) -> dict[str, float]:
    """Each role's own rate in this process, with nothing else running: the inputs of the
    saturation model in RESULTS.md."""
    from distdqn.envs import env_spaces
    from distdqn.roles import Actor, Learner, ReplayShard

    config = resolve_config("CartPole-v1", overrides=["placement.actor_steps_per_call=16"])
    observation_space, action_space = env_spaces(config.env)
    actor, shard = Actor(config, 0), ReplayShard(config, 0, observation_space)
    learner = Learner(config, observation_space, action_space)
    actor.set_weights(learner.weights())

    def rate(step, units: int) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            done += units
        return done / (time.perf_counter() - started)

    actor_rate = rate(lambda: shard.add(actor.collect(16)[0]), 16 * config.env.num_envs)
    batch_size = config.algorithm.batch_size
    sample_rate = rate(lambda: shard.sample([batch_size] * 16, 0.4), 16)
    batches = shard.sample([batch_size] * 16, 0.4)
    update_rate = rate(lambda: shard.update_priorities(learner.update(0, batches)), 16)
    return {
        "actor_env_steps_per_s": actor_rate,
        "shard_batches_per_s": sample_rate,
        "learner_updates_per_s": update_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--steps-per-call", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps({"role_rates": role_rates()}), flush=True)
    print(json.dumps({"ray_costs": ray_costs()}), flush=True)
    medians = {}
    for name, overrides in SETUPS.items():
        runs = [run_setup(overrides, args.steps, args.steps_per_call) for _ in range(args.repeats)]
        for run in runs:
            print(json.dumps({"setup": name, **run}), flush=True)
        medians[name] = {key: statistics.median(r[key] for r in runs) for key in ("env_steps_per_s", "updates_per_s")}
    base = medians["inline, 1 actor"]
    print("| setup | env steps/s | updates/s | env steps/s vs inline |")
    print("|---|---|---|---|")
    for name, median in medians.items():
        ratio = median["env_steps_per_s"] / base["env_steps_per_s"]
        print(f"| {name} | {median['env_steps_per_s']:.0f} | {median['updates_per_s']:.0f} | {ratio:.2f} |")
    overhead_us = (1 / medians["ray, 1 actor"]["env_steps_per_s"] - 1 / base["env_steps_per_s"]) * 1e6
    print(f"ray overhead per env step (1 actor, same work): {overhead_us:.0f} us")


if __name__ == "__main__":
    main()
