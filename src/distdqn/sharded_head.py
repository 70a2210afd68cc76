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

import math
from typing import Any

import gymnasium as gym
import torch
import torch.distributed as dist
from torch import nn

from distdqn.config import NetworkConfig
from distdqn.envs import num_actions
from distdqn.networks import QTorso, TorsoSpec, torso_spec

INIT_BLOCK_ELEMENTS = 1 << 22
"""Elements of the whole head drawn at a time when a shard initializes its rows (16 MiB)."""


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
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """`nn.Linear`'s init of the whole layer, drawn from the global generator block by block
        in row order, keeping this shard's rows: every K starts from the weights the unsplit
        layer would, and no process ever holds the whole head."""
        rows, width = self.num_actions, self.weight.shape[1]
        step = max(1, INIT_BLOCK_ELEMENTS // width)
        for first in range(0, rows, step):
            block = torch.empty(min(step, rows - first), width)
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
            self._keep_rows(self.weight, block, first)
        bound = 1.0 / math.sqrt(width)
        for first in range(0, rows, INIT_BLOCK_ELEMENTS):
            self._keep_rows(
                self.bias, torch.empty(min(INIT_BLOCK_ELEMENTS, rows - first)).uniform_(-bound, bound), first
            )

    def _keep_rows(self, mine: torch.Tensor, block: torch.Tensor, first: int) -> None:
        """Copy the rows of `block` (whole-head rows from `first` on) that this shard holds."""
        low, high = max(first, self.start), min(first + len(block), self.stop)
        if low < high:
            mine[low - self.start : high - self.start] = block[low - first : high - first]

    @torch.no_grad()
    def gather(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The whole head's tensor (the weight or the bias) from every shard's `rows` of it, on
        the group's first process (None on the others): what actors act with. Each shard sends
        its block straight into its place in the whole tensor, so the first process holds one
        whole copy and nothing more (gloo's gather would stage a second)."""
        world = dist.get_world_size(self.group)
        ranks = [dist.get_global_rank(self.group, i) if self.group is not None else i for i in range(world)]
        if dist.get_rank() != ranks[0]:
            dist.send(rows.contiguous(), dst=ranks[0], group=self.group)
            return None
        whole = torch.empty((self.num_actions, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        whole[self.start : self.stop] = rows
        for index in range(1, world):
            start, stop = shard_rows(self.num_actions, world, index)
            dist.recv(whole[start:stop], src=ranks[index], group=self.group)
        return whole

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


class ShardedQNetwork(QTorso):
    """A Q-network whose head (or, dueling, whose advantage layer) is one shard's rows; the torso
    and the value layer are replicated. Its parameter names and order are `QNetwork`'s, so that
    the gathered whole is a `QNetwork`'s state dict (and its Adam moments keep their ids).

    Dueling: Q = V + A - mean(A), with mean(A) summed over shards. V and the mean enter every
    process's loss for every row, so their gradients are whole on each process; only the
    advantage rows go through `copy_to_shards`."""

    def __init__(self, spec: TorsoSpec, num_actions: int, dueling: bool, shards: int, index: int) -> None:
        super().__init__(*spec)
        self.dueling = dueling
        self.num_actions = num_actions
        if dueling:
            self.value = nn.Linear(self.width, 1)
            self.advantage = ShardedLinear(self.width, num_actions, shards, index)
        else:
            self.head = ShardedLinear(self.width, num_actions, shards, index)

    @property
    def rows(self) -> ShardedLinear:
        """The layer whose rows this process holds."""
        return self.advantage if self.dueling else self.head

    @property
    def rows_names(self) -> tuple[str, str]:
        """The state-dict names of the rows this process holds."""
        layer = "advantage" if self.dueling else "head"
        return f"{layer}.weight", f"{layer}.bias"

    def set_group(self, group: Any) -> None:
        """The process group of the shards of this head (None: the default group)."""
        self.rows.group = group

    def _baseline(self, features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """V(s) - mean_a A(s, a): what dueling adds to every action's advantage."""
        mean = sum_over_shards(scores.sum(dim=1), self.rows.group) / self.num_actions
        return self.value(features).squeeze(1) - mean

    def taken(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for each row's action (differentiable)."""
        scores = self.rows(features)
        q_taken = self.rows.taken(scores, actions)
        return q_taken + self._baseline(features, scores) if self.dueling else q_taken

    @torch.no_grad()
    def best(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(max_a Q(s, a), argmax_a Q(s, a)); dueling's baseline does not depend on the action."""
        scores = self.rows(features)
        values, actions = self.rows.best(scores)
        return (values + self._baseline(features, scores) if self.dueling else values), actions

    def clip_gradients(self, max_norm: float) -> None:
        """`clip_grad_norm_` over the whole network: the rows' squared norms summed over shards,
        the replicated parameters' counted once."""
        rows = set(self.rows.parameters())
        own = [p.grad for p in self.rows.parameters() if p.grad is not None]
        shared = [p.grad for p in self.parameters() if p not in rows and p.grad is not None]
        squares = torch.stack([g.pow(2).sum() for g in own]).sum() if own else torch.zeros(())
        dist.all_reduce(squares, group=self.rows.group)
        if shared:
            squares = squares + torch.stack([g.pow(2).sum() for g in shared]).sum()
        coefficient = torch.clamp(max_norm / (squares.sqrt() + 1e-6), max=1.0)
        torch._foreach_mul_(own + shared, coefficient)


def build_sharded_q_network(
    config: NetworkConfig, observation_space: gym.Space, action_space: gym.Space, shards: int, index: int
) -> ShardedQNetwork:
    """Shard `index` of `shards` of the network `build_q_network` makes for these spaces."""
    spec = torso_spec(config, observation_space)
    return ShardedQNetwork(spec, num_actions(action_space), config.dueling, shards, index)


def join_head_rows(parts: list[tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> tuple[dict[str, torch.Tensor], dict]:
    """The whole (tensors, state) of a learner from its head shards' `Learner.state_dict()`, in
    shard order: the tensors their state names under "head_rows" are concatenated, the rest
    (replicated) are the first shard's. One part is returned as it is."""
    tensors, state = parts[0]
    names = state.get("head_rows", [])
    whole = tensors | {name: torch.cat([part[name] for part, _ in parts]) for name in names}
    return whole, {key: value for key, value in state.items() if key != "head_rows"}
