"""Our overhead on pixels: actor frames/s vs the raw env, learner updates/s vs bare PyTorch.

Both pairs run in the same process, one after the other, on the same machine:
- raw env: `num_envs` preprocessed Pong envs, random actions, with each backend (a gymnasium
  SyncVectorEnv over ale-py, and EnvPool); actor: distdqn's Actor on the same envs (frame
  stacks, Nature CNN forward, epsilon-greedy, n-step folding, priorities), timed with the
  network forward and with a free stand-in for it; and two actors with half the envs each, on
  their own threads (the `threads` runtime).
- bare loop: the DQN update written directly in PyTorch (Double DQN targets, Huber loss,
  Adam) on random uint8 batches; learner: distdqn's Learner on batches sampled from a shard.

    python benchmarks/pixel_overheads.py [--seconds 20] [--num-envs 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from distdqn.config import override_config, resolve_config
from distdqn.envs import env_spaces, make_vector_env, policy_space
from distdqn.roles import Actor, Learner, ReplayShard
from distdqn.runtime import ThreadedRuntime


def rate(step, units: int, seconds: float) -> float:
    step()  # warm up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        done += units
    return done / (time.perf_counter() - started)


def raw_env_rate(config, seconds: float) -> float:
    env = make_vector_env(config.env, config.env.num_envs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n = config.env.num_envs
    result = rate(lambda: env.step(rng.integers(env.single_action_space.n, size=n)), n, seconds)
    env.close()
    return result


def actor_rates(config, seconds: float) -> tuple[float, float, float]:
    """Agent steps/s of the actor; the share of its time spent in the Q-network forward; and
    agent steps/s of the same actor with the forward replaced by a free stand-in (zero Q-values),
    which is everything distdqn adds around the env besides the network."""
    actor = Actor(config, 0)
    forward_time = 0.0
    original = actor._q

    def timed_q(observations):
        nonlocal forward_time
        started = time.perf_counter()
        values = original(observations)
        forward_time += time.perf_counter() - started
        return values

    steps = 16
    actor._q = timed_q
    started = time.perf_counter()
    measured = rate(lambda: actor.collect(steps), steps * config.env.num_envs, seconds)
    share = forward_time / (time.perf_counter() - started)
    actor._q = lambda observations: np.zeros((len(observations), actor.num_actions), np.float32)
    without_forward = rate(lambda: actor.collect(steps), steps * config.env.num_envs, seconds)
    actor.env.close()
    return measured, share, without_forward


def threaded_actors_rate(config, seconds: float, num_actors: int = 2) -> float:
    """Agent steps/s of `num_actors` actors sharing the envs, each on its own thread (the
    `threads` runtime): one actor's network forward overlaps another's env stepping."""
    per_actor = config.env.num_envs // num_actors
    config = override_config(config, [f"env.num_envs={per_actor}", f"placement.num_actors={num_actors}"], "benchmark")
    runtime = ThreadedRuntime()
    actors = [runtime.spawn(Actor, config, index, name=f"actor-{index}") for index in range(num_actors)]
    steps = 16

    def collect_all() -> None:
        runtime.wait([runtime.call(actor, "collect", steps, num_returns=2)[1] for actor in actors])

    measured = rate(collect_all, steps * per_actor * num_actors, seconds)
    runtime.shutdown()
    return measured


def bare_update_rate(config, space, num_actions: int, seconds: float) -> float:
    learner = Learner(config, space, gym.spaces.Discrete(num_actions))
    online = copy.deepcopy(learner.online)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=6.25e-5, eps=1.5e-4, fused=True)
    batch = config.algorithm.batch_size
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.integers(0, 255, (batch, *space.shape), dtype=np.uint8))
    next_obs = torch.from_numpy(rng.integers(0, 255, (batch, *space.shape), dtype=np.uint8))
    actions = torch.from_numpy(rng.integers(num_actions, size=batch))
    rewards = torch.zeros(batch)

    def update() -> None:
        q = online(obs).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            best = online(next_obs).argmax(1, keepdim=True)
            y = rewards + 0.97 * target(next_obs).gather(1, best).squeeze(1)
        loss = F.smooth_l1_loss(q, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return rate(update, 1, seconds)


def learner_rate(config, frame_space, space, action_space, seconds: float) -> float:
    actor, shard = Actor(config, 0), ReplayShard(config, 0, frame_space)
    while shard.size() < 4 * config.algorithm.batch_size:
        shard.add(actor.collect(16)[0])
    actor.env.close()
    learner = Learner(config, space, action_space)
    groups = 8
    rows = [config.algorithm.batch_size] * groups
    return rate(lambda: shard.update_priorities(learner.update(0, shard.sample(rows, 0.4))), groups, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--env", default="ALE/Pong-v5")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, float | str | int] = {"env": args.env, "num_envs": args.num_envs, "torch_threads": 1}
    for backend in ("gymnasium", "envpool"):
        config = resolve_config(
            args.env, overrides=[f"env.num_envs={args.num_envs}", "replay.capacity=20000", f"env.backend={backend}"]
        )
        raw = raw_env_rate(config, args.seconds)
        actor, forward_share, without_forward = actor_rates(config, args.seconds)
        report.update(
            {
                f"{backend}_raw_env_agent_steps_per_s": raw,
                f"{backend}_actor_agent_steps_per_s": actor,
                f"{backend}_actor_vs_raw": actor / raw,
                f"{backend}_actor_forward_share": forward_share,
                f"{backend}_actor_without_forward_agent_steps_per_s": without_forward,
                f"{backend}_actor_without_forward_vs_raw": without_forward / raw,
            }
        )
        threaded = threaded_actors_rate(config, args.seconds)
        report.update(
            {
                f"{backend}_2_threaded_actors_agent_steps_per_s": threaded,
                f"{backend}_2_threaded_actors_vs_raw": threaded / raw,
            }
        )
    frame_space, action_space = env_spaces(config.env)
    space = policy_space(config.env, frame_space)
    bare = bare_update_rate(config, space, int(action_space.n), args.seconds)
    ours = learner_rate(config, frame_space, space, action_space, args.seconds)
    report.update({"bare_updates_per_s": bare, "learner_updates_per_s": ours, "learner_vs_bare": ours / bare})
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
