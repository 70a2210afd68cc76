"""A Q-head split by action rows over the K processes of a torch.distributed group: the model
split for catalogs whose output layer (one row per item) outgrows one learner.

Each process holds the replicated torso and its own contiguous block of head rows, with their
gradients and Adam moments. The scheme is Megatron-LM's vocabulary-parallel layer, for DQN:
- the torso's features enter the shard through `copy_to_shards` (identity forward; the
  backward sums the feature gradients over shards, so every replica of the torso gets the
  gradient the unsplit network would, and no further all-reduce is needed for it);
- `Q(s, a)` comes from the owner shard, summed over shards (`sum_over_shards`: all-reduce
  forward, identity backward, since every process computes the same loss);
- `max_a` and the Double-DQN `argmax_a` reduce each shard's best over the group.
The loss, the |TD errors| (priorities) and every update equal the unsplit network's up to
floating-point reassociation (a test checks K = 2 against K = 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def shard_rows(num_actions: int, shards: int, index: int) -> tuple[int, int]:
    """[start, stop) of the head rows shard `index` of `shards` holds: contiguous blocks, the
    first `num_actions % shards` one row longer, so any K up to num_actions splits a head."""
    if not 0 < shards <= num_actions or not 0 <= index < shards:
        raise ValueError(f"cannot split {num_actions} actions into shard {index} of {shards}")
    base, extra = divmod(num_actions, shards)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


class _CopyToShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumOverShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, partial: torch.Tensor, group: Any) -> torch.Tensor:
        total = partial.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def copy_to_shards(features: torch.Tensor, group: Any = None) -> torch.Tensor:
    return _CopyToShards.apply(features, group)


def sum_over_shards(partial: torch.Tensor, group: Any = None) -> torch.Tensor:
    return _SumOverShards.apply(partial, group)


class ShardedLinear(nn.Module):
    """Rows [start, stop) of an `in_features -> num_actions` linear layer."""

    def __init__(self, in_features: int, num_actions: int, shards: int, index: int, group: Any = None) -> None:
        super().__init__()
        self.start, self.stop = shard_rows(num_actions, shards, index)
        self.num_actions = num_actions
        self.group = group
        self.weight = nn.Parameter(torch.empty(self.stop - self.start, in_features))
        self.bias = nn.Parameter(torch.empty(self.stop - self.start))

    @torch.no_grad()
    def load_rows(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Take this shard's rows of a whole head (a checkpoint's, written at any K)."""
        self.weight.copy_(weight[self.start : self.stop])
        self.bias.copy_(bias[self.start : self.stop])

    @torch.no_grad()
    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The whole head's tensor from every shard's `rows` of it (the weight, the bias or an
        Adam moment of either), on every process: what a checkpoint holds and actors act with.
        gloo gathers equal sizes only, so shorter blocks travel padded."""
        world = dist.get_world_size(self.group)
        longest = max(stop - start for start, stop in (shard_rows(self.num_actions, world, i) for i in range(world)))
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        padded[: len(rows)] = rows
        blocks = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(blocks, padded, group=self.group)
        sizes = [stop - start for start, stop in (shard_rows(self.num_actions, world, i) for i in range(world))]
        return torch.cat([block[:size] for block, size in zip(blocks, sizes, strict=True)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """This shard's Q-values, [batch, stop - start]."""
        return nn.functional.linear(copy_to_shards(features, self.group), self.weight, self.bias)

    def taken(self, local_q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for each row's action, from its owner shard (differentiable)."""
        mine = (actions >= self.start) & (actions < self.stop)
        index = (actions - self.start).clamp(0, self.stop - self.start - 1).unsqueeze(1)
        partial = torch.where(mine, local_q.gather(1, index).squeeze(1), torch.zeros_like(local_q[:, 0]))
        return sum_over_shards(partial, self.group)

    @torch.no_grad()
    def best(self, local_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(max_a Q, argmax_a Q) over the whole head; ties go to the lowest action, as torch's
        argmax of the unsplit head does."""
        values, index = local_q.max(dim=1)
        world = dist.get_world_size(self.group)
        all_values = [torch.empty_like(values) for _ in range(world)]
        all_actions = [torch.empty_like(index) for _ in range(world)]
        dist.all_gather(all_values, values, group=self.group)
        dist.all_gather(all_actions, index + self.start, group=self.group)
        stacked_values, stacked_actions = torch.stack(all_values, 1), torch.stack(all_actions, 1)
        winner = stacked_values.argmax(dim=1, keepdim=True)  # shards hold ascending rows: first max wins
        return stacked_values.gather(1, winner).squeeze(1), stacked_actions.gather(1, winner).squeeze(1)
