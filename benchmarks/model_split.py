"""The model split: learner updates/s and peak learner memory with the Q-head split over K learners.

Why: `placement.head_shards = K` splits the Q-head's rows (one per item of Recommend-v0's catalog)
over K learner processes. This measures what that buys for catalogs of 10^4 to 10^6 items, and the
largest catalog a learner trains under a stated memory cap with K = 1 and with K = 2.

Protocol:
* Real `Learner`s with the Recommend-v0 preset's network (256-256 dueling, Double DQN, batch 128),
  one process per learner (K = 2: a gloo group on loopback), `--threads` torch threads each; the
  batches are drawn from the observation space (the learner's cost does not depend on the values).
* Each learner makes 2 warm-up updates, then `--updates` timed ones (a barrier first with K = 2);
  updates/s is the timed updates over their wall seconds on the first learner.
* Then each learner does what a run does besides updating: publishes its weights once (with K = 2
  gathered whole on the first shard) and hands over its checkpoint state once (its own rows).
* Peak memory is each learner process's peak resident set (ru_maxrss), after all of that; the
  table gives the largest over the K learners, and the process's resident set before the learner
  was built (Python, torch, the env), which every learner pays too.
* K = 2 uses two processes: on this 2-core machine, twice the cores of K = 1 with one thread. A
  row of K = 1 with `--threads 2` is the baseline that uses the same cores.
* The cap search (`--cap-gib`) trains each K at growing catalog sizes (`--cap-sizes`) with 3 timed
  updates, and reports the largest whose peak stays under the cap in every learner.

    python benchmarks/model_split.py --sizes 10000 100000 1000000 --updates 20
    python benchmarks/model_split.py --sizes --cap-gib 3

prints one JSON line per measurement, then the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import time
from typing import Any

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

from distdqn.config import resolve_config
from distdqn.envs import env_spaces, policy_space
from distdqn.roles import Learner
from distdqn.types import SampleBatch

GIB = 2**30


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _batch(observation_space: Any, num_items: int, size: int, seed: int) -> SampleBatch:
    rng = np.random.default_rng(seed)
    shape = (size, *observation_space.shape)
    return SampleBatch(
        indices=np.arange(size, dtype=np.int64),
        stamps=np.zeros(size, np.int64),
        shards=np.zeros(size, np.int64),
        observations=rng.random(shape, np.float32),
        actions=rng.integers(num_items, size=size),
        returns=rng.random(size, np.float32),
        discounts=np.full(size, 0.99**5, np.float32),
        next_observations=rng.random(shape, np.float32),
        weights=np.ones(size, np.float32),
    )


def _learner(rank: int, shards: int, num_items: int, threads: int, updates: int, port: int, results: Any) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    config = resolve_config(
        "distdqn/Recommend-v0",
        overrides=[
            f"env.kwargs={{num_items: {num_items}}}",
            "placement.runtime=ray",
            f"placement.num_learners={shards}",
            f"placement.head_shards={shards}",
            "network.action_features=false",  # one output per item: the head that grows and splits
            f"placement.torch_threads={threads}",
        ],
    )
    frame_space, action_space = env_spaces(config.env)
    space = policy_space(config.env, frame_space)
    batches = [_batch(space, num_items, config.algorithm.batch_size, seed) for seed in range(4)]
    before = _current_rss()
    learner = Learner(config, space, action_space, rank=rank)
    if shards > 1:
        learner.join_group(f"tcp://127.0.0.1:{port}", rank, shards)
    for batch in batches[:2]:
        learner.update(0, [batch])
    if shards > 1:
        dist.barrier()
    start = time.perf_counter()
    for update in range(updates):
        learner.update(0, [batches[update % len(batches)]])
    seconds = time.perf_counter() - start
    weights = learner.weights()
    del weights
    state = learner.state_dict()
    del state
    results.put({"rank": rank, "updates_per_s": updates / seconds, "peak_rss": _peak_rss(), "base_rss": before})
    if shards > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(shards: int, num_items: int, threads: int, updates: int) -> dict[str, Any]:
    """One measurement: K = `shards` learner processes on a catalog of `num_items`."""
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_learner, args=(rank, shards, num_items, threads, updates, port, results))
        for rank in range(shards)
    ]
    for process in processes:
        process.start()
    answers = []
    for _ in processes:
        answers.append(results.get())
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise RuntimeError(f"a learner failed: exit codes {[process.exitcode for process in processes]}")
    first = next(answer for answer in answers if answer["rank"] == 0)
    row = {
        "num_items": num_items,
        "head_shards": shards,
        "threads": threads,
        "updates_per_s": round(first["updates_per_s"], 3),
        "peak_rss_gib": round(max(answer["peak_rss"] for answer in answers) / GIB, 3),
        "base_rss_gib": round(max(answer["base_rss"] for answer in answers) / GIB, 3),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--updates", type=int, default=20, help="timed updates per measurement")
    parser.add_argument("--cap-gib", type=float, default=None, help="per-learner memory cap for the search")
    parser.add_argument(
        "--cap-sizes", type=int, nargs="+", default=[500_000, 750_000, 1_000_000, 1_250_000, 1_500_000, 2_000_000]
    )
    args = parser.parse_args()

    rows = []
    for num_items in args.sizes:
        for shards, threads in ((1, 1), (1, 2), (2, 1)):
            rows.append(measure(shards, num_items, threads, args.updates))
    if rows:
        print("\n| items | K | threads per learner | updates/s | peak learner RSS (GiB) | RSS before the learner |")
        print("|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['num_items']:,} | {row['head_shards']} | {row['threads']} | {row['updates_per_s']:.2f} "
                f"| {row['peak_rss_gib']:.2f} | {row['base_rss_gib']:.2f} |"
            )
    if args.cap_gib is not None:
        print(f"\nlargest catalog under {args.cap_gib} GiB per learner:")
        for shards in (1, 2):
            largest = None
            for num_items in args.cap_sizes:
                row = measure(shards, num_items, 1, 3)
                if row["peak_rss_gib"] > args.cap_gib:
                    break
                largest = num_items
            print(f"K = {shards}: {largest if largest is None else f'{largest:,}'} items")


if __name__ == "__main__":
    main()
