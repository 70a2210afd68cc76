"""DQN targets, losses and target-network updates as pure functions of tensors.

Multi-step returns arrive already folded (see `replay.nstep`): a transition carries its
discounted reward sum R and the discount to apply to the bootstrap value, gamma**m when the
episode went on (or was truncated) and 0 when it terminated.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def td_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = R + discount * Q_target(s', a*), with a* = argmax Q_online(s') (Double DQN) when
    `next_q_online` is given, else a* = argmax Q_target(s') (the original DQN max)."""
    if next_q_online is None:
        bootstrap = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        bootstrap = next_q_target.gather(1, best).squeeze(1)
    return returns + discounts * bootstrap


def dqn_loss(
    q_taken: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    kind: Literal["huber", "mse"] = "huber",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted mean TD loss and |TD error| per transition (the new priorities).

    Huber uses delta 1 (the DQN paper's error clipping); MSE is 0.5 * error**2 so that both
    have the same gradient for small errors.
    """
    target = target.detach()
    if kind == "huber":
        per_item = F.smooth_l1_loss(q_taken, target, reduction="none", beta=1.0)
    else:
        per_item = 0.5 * (q_taken - target) ** 2
    if weights is not None:
        per_item = per_item * weights
    return per_item.mean(), (q_taken - target).detach().abs()


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target; tau = 1 is the hard copy."""
    target_params: list[torch.Tensor] = list(target.parameters())
    online_params: list[torch.Tensor] = list(online.parameters())
    if tau >= 1.0:
        torch._foreach_copy_(target_params, online_params)
    else:
        torch._foreach_lerp_(target_params, online_params, tau)
