"""The feature head's kept item embeddings: an actor's acting rate at a large catalog.

Why: `network.action_features` scores each of N items by an embedding of its features. A frozen
copy (an actor's, the evaluator's, the learner's target) keeps those N embeddings until its
weights are written; before, every acting step embedded the whole catalog again.

Protocol:
* One real `Actor` with the Recommend-v0 preset (8 envs) and `--items` items, one torch thread,
  past its epsilon decay (eps 0.05), so nearly every step is a greedy forward.
* Each repeat times `--steps` vector steps with the kept embeddings, then the same with the
  catalog embedded at every forward (the old behaviour), after 20 untimed steps each; the
  ratio is of the medians over `--repeats` interleaved repeats.

    python benchmarks/feature_head_acting.py --items 10000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distdqn.config.resolve import resolve_config
from distdqn.networks import ActionFeatureQNetwork
from distdqn.roles.actor import Actor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve_config(
        "distdqn/Recommend-v0", overrides=[f"env.kwargs={{num_items: {args.items}}}", "algorithm.eps_end=0.05"]
    )
    actor = Actor(config, 0, start_env_steps=10**7)
    ways = {"kept": ActionFeatureQNetwork._items, "every forward": ActionFeatureQNetwork._embed_items}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, items in ways.items():
            ActionFeatureQNetwork._items = items  # type: ignore[method-assign]
            actor.collect(20)
            start = time.perf_counter()
            actor.collect(args.steps)
            seconds[name].append(time.perf_counter() - start)
    steps = args.steps * config.env.num_envs
    for name, times in seconds.items():
        print(f"{name}: {steps / statistics.median(times):,.0f} env steps/s (median of {args.repeats})")
    ratio = statistics.median(seconds["every forward"]) / statistics.median(seconds["kept"])
    print(f"kept / every forward: {ratio:.2f}x")


if __name__ == "__main__":
    main()
