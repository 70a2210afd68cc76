"""The learner: online and target networks and the only optimizer in the system."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from distdqn.config import Config
from distdqn.losses import dqn_loss, td_target, update_target
from distdqn.networks import build_q_network
from distdqn.types import PriorityUpdate, SampleBatch, UpdateResult, Weights


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Learner:
    def __init__(self, config: Config, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.config = config.algorithm
        self.device = resolve_device(config.placement.device)
        torch.manual_seed(config.seed)
        self.online = build_q_network(config.network, observation_space, action_space).to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # fused Adam is one kernel for all parameters: small networks are bound by per-op overhead
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.lr, eps=self.config.adam_eps,
                                          fused=True)
        self.updates = 0

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def update(self, batch: SampleBatch) -> UpdateResult:
        """One gradient step on a batch; returns |TD errors| as the batch's new priorities."""
        algorithm = self.config
        observations = self._tensor(batch.observations)
        next_observations = self._tensor(batch.next_observations)
        actions = self._tensor(batch.actions)
        q_values = self.online(observations)
        q_taken = q_values.gather(1, actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_q_online = self.online(next_observations) if algorithm.double_dqn else None
            target = td_target(self._tensor(batch.returns), self._tensor(batch.discounts),
                               self.target(next_observations), next_q_online)
        loss, td_abs = dqn_loss(q_taken, target, self._tensor(batch.weights), algorithm.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if algorithm.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), algorithm.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.updates += 1
        if self.updates % algorithm.target_update_interval == 0:
            update_target(self.target, self.online, algorithm.tau)
        priorities = PriorityUpdate(batch.indices, batch.stamps, td_abs.cpu().numpy().astype(np.float64))
        return UpdateResult(priorities, {"loss": loss.item(), "q_mean": q_taken.mean().item()})

    def weights(self) -> Weights:
        """The online network as NumPy arrays, versioned by the update count."""
        tensors = {name: value.detach().cpu().numpy().copy() for name, value in self.online.state_dict().items()}
        return Weights(self.updates, tensors)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (networks and optimizer moments) and JSON-able state, for a checkpoint."""
        tensors = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        optimizer = self.optimizer.state_dict()
        for param_id, state in optimizer["state"].items():
            for name, value in state.items():
                tensors[f"optimizer.{param_id}.{name}"] = torch.as_tensor(value)
        return tensors, {"updates": self.updates, "param_groups": optimizer["param_groups"]}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        def section(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.online.load_state_dict(section("online."))
        self.target.load_state_dict(section("target."))
        optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in section("optimizer.").items():
            param_id, name = key.split(".", 1)
            optimizer_state.setdefault(int(param_id), {})[name] = value
        self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": state["param_groups"]})
        self.updates = int(state["updates"])
