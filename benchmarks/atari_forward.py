"""The Atari actor's Nature CNN forward on one CPU thread: per-observation cost by batch size and
by the levers that might cut it.

Why: the Atari actor keeps 0.5-0.6 of the raw env's rate on this CPU, and its forward (8 stacked
84x84 observations per vector step) is over 40% of its time (RESULTS.md, "Pixels"). This says
whether a cheaper forward can close that gap: inference mode (what the actor uses), bfloat16
autocast (AMX), channels-last, `torch.compile`, oneDNN off, and more envs per forward.

Protocol: the preset's network (Nature CNN, 6 actions) on random uint8 stacks; each way is timed
over `--calls` calls after one untimed call, the ways interleaved, medians of `--repeats`.

    python benchmarks/atari_forward.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from distdqn.config import NetworkConfig
from distdqn.networks import build_q_network


def ways(network: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last)
    compiled = torch.compile(network, dynamic=False)

    def inference(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return network(x)

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            return network(x)

    def channels_last_bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            return channels_last(x.contiguous(memory_format=torch.channels_last))

    def compile_(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    def onednn_off(x: torch.Tensor) -> torch.Tensor:
        with torch.backends.mkldnn.flags(enabled=False), torch.inference_mode():
            return network(x)

    return {
        "inference mode (the actor's)": inference,
        "bf16 autocast": bf16,
        "channels-last + bf16": channels_last_bf16,
        "torch.compile": compile_,
        "oneDNN off": onednn_off,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    observations = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    network = build_q_network(NetworkConfig(), observations, gym.spaces.Discrete(6)).requires_grad_(False)
    forward = ways(network)
    ms: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for batch in args.batches:
            x = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
            for name, call in forward.items():
                call(x)
                start = time.perf_counter()
                for _ in range(args.calls):
                    call(x)
                ms.setdefault((name, batch), []).append((time.perf_counter() - start) / args.calls / batch * 1e3)
    print("| way | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
    print("|---|" + "---|" * len(args.batches))
    for name in forward:
        cells = [f"{statistics.median(ms[name, b]):.3f}" for b in args.batches]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("ms per observation, medians of", args.repeats)


if __name__ == "__main__":
    main()
