"""The learner: online and target networks and the only optimizer in the system.

With several learners, each samples its own shards and they average gradients with one
all-reduce per update (torch.distributed: gloo on CPU, nccl on GPU). Identical initial weights,
identical averaged gradients and identical optimizer state keep every replica bit-identical.
"""

from __future__ import annotations

import copy
import hashlib
import socket
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist

from distdqn.checkpoint import load_checkpoint
from distdqn.config import Config
from distdqn.losses import dqn_loss, td_target, update_target
from distdqn.networks import build_q_network
from distdqn.types import PriorityUpdate, SampleBatch, UpdateResult, Weights


class LearnerGroupBroken(RuntimeError):
    """The learners' all-reduce group lost a member (or this learner is not in it yet)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Learner:
    """`restore_dir` is the run's `checkpoints/latest`: when it exists (a resumed run, or a
    learner restarted after a crash) the learner starts from it, otherwise from a seeded init."""

    def __init__(self, config: Config, observation_space: gym.Space, action_space: gym.Space,
                 restore_dir: str | None = None) -> None:
        self.config = config.algorithm
        self.device = resolve_device(config.placement.device)
        torch.set_num_threads(config.placement.torch_threads)
        torch.manual_seed(config.seed)
        self.online = build_q_network(config.network, observation_space, action_space).to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # fused Adam is one kernel for all parameters: small networks are bound by per-op overhead
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.lr, eps=self.config.adam_eps,
                                          fused=True)
        self.updates = 0
        self.world_size = config.placement.num_learners
        self._in_group = self.world_size == 1
        self.restore_dir = restore_dir
        self.reload()

    def reload(self) -> int:
        """Load `restore_dir` if it exists (a resumed run, a restarted learner, or a group of
        learners starting over together after one died); return the update count it holds."""
        if self.restore_dir is not None and Path(self.restore_dir).exists():
            checkpoint = load_checkpoint(Path(self.restore_dir))
            self.load_state_dict(checkpoint.tensors, checkpoint.state["learner"])
        return self.updates

    # -- data-parallel group ----------------------------------------------------------------
    @staticmethod
    def free_port() -> int:
        """A free TCP port on this learner's host, for the process group to meet at."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            return probe.getsockname()[1]

    def join_group(self, init_method: str, rank: int, world_size: int) -> None:
        """Join the learners' process group; all learners must call this at the same time."""
        if dist.is_initialized():
            dist.destroy_process_group()
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        self.world_size = world_size
        self._in_group = True

    def _average_gradients(self, has_data: bool) -> bool:
        """Average gradients over the learners that had data; False if none had any."""
        parameters = list(self.online.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([float(has_data)], device=self.device)])
        if not self._in_group:
            raise LearnerGroupBroken("this learner has not joined the all-reduce group")
        try:
            dist.all_reduce(flat)
        except RuntimeError as error:  # a peer died: gloo sees its connection close
            self._in_group = False
            raise LearnerGroupBroken(str(error).splitlines()[0]) from None
        contributors = flat[-1].item()
        if contributors == 0:
            return False
        flat = flat[:-1] / contributors
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = flat[offset:offset + size].view_as(parameter).clone()
            offset += size
        return True

    # -- updates --------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # arrays read zero-copy from a distributed object store are read-only; torch wants writable
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if self.device.type == "cuda":  # page-locked host memory lets the copy run asynchronously
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def update(self, batches: list[SampleBatch]) -> UpdateResult:
        """One gradient step per batch; returns their |TD errors| as new priorities, in order."""
        results = [self._step(batch) for batch in batches]
        indices = np.concatenate([batch.indices for batch in batches])
        stamps = np.concatenate([batch.stamps for batch in batches])
        priorities = np.concatenate([td for td, _ in results])
        metrics = next((m for _, m in reversed(results) if m), {})
        return UpdateResult(PriorityUpdate(indices, stamps, priorities), metrics)

    def _step(self, batch: SampleBatch) -> tuple[np.ndarray, dict[str, float]]:
        """One gradient step. An empty batch (a shard restarted empty) makes no step of its own
        but still joins the all-reduce, so that the other learners can go on."""
        algorithm = self.config
        self.optimizer.zero_grad(set_to_none=True)
        has_data = len(batch.actions) > 0
        metrics: dict[str, float] = {}
        td_abs = np.zeros(0)
        if has_data:
            observations = self._tensor(batch.observations)
            next_observations = self._tensor(batch.next_observations)
            q_taken = self.online(observations).gather(1, self._tensor(batch.actions).unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                next_q_online = self.online(next_observations) if algorithm.double_dqn else None
                target = td_target(self._tensor(batch.returns), self._tensor(batch.discounts),
                                   self.target(next_observations), next_q_online)
            loss, td = dqn_loss(q_taken, target, self._tensor(batch.weights), algorithm.loss)
            loss.backward()
            td_abs = td.cpu().numpy().astype(np.float64)
            metrics = {"loss": loss.item(), "q_mean": q_taken.mean().item()}
        step = has_data if self.world_size == 1 else self._average_gradients(has_data)
        if step:
            if algorithm.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.online.parameters(), algorithm.max_grad_norm, foreach=True)
            self.optimizer.step()
            self.updates += 1
            if self.updates % algorithm.target_update_interval == 0:
                update_target(self.target, self.online, algorithm.tau)
        return td_abs, metrics

    def weights(self) -> Weights:
        """The online network as NumPy arrays, versioned by the update count."""
        tensors = {name: value.detach().cpu().numpy().copy() for name, value in self.online.state_dict().items()}
        return Weights(self.updates, tensors)

    def stats(self) -> dict[str, int]:
        return {"updates": self.updates}

    def parameters_digest(self) -> str:
        """A hash of the online weights' bytes, for checking that replicas are identical."""
        digest = hashlib.sha256()
        for value in self.online.state_dict().values():
            digest.update(value.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    # -- checkpoints ----------------------------------------------------------------------
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
