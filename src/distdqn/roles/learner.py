"""The learner: online and target networks and the only optimizer in the system.

With several learners, each draws its batches from all shards and they average gradients with
one all-reduce per update (torch.distributed: gloo on CPU, nccl on GPU). Identical initial weights,
identical averaged gradients and identical optimizer state keep every replica bit-identical.

With `placement.head_shards = K > 1` the head is split by action rows (`distdqn.sharded_head`):
learner r holds shard r % K of data-parallel replica r // K. The K learners of a replica get the
same batches and compute the same loss together; a replica's gradients are averaged with the
other replicas' over the learners that hold the same rows. Published weights are gathered whole
on the replica's first learner; for a checkpoint each learner hands over its rows (the loop joins
them), and a checkpoint loads at any K (each learner reads its rows).
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from distdqn.config import Config
from distdqn.losses import dqn_loss, td_target, update_target
from distdqn.networks import QTorso, build_q_network
from distdqn.roles.learner_group import LearnerGroup
from distdqn.schedules import learning_rate
from distdqn.seeding import stream_seed
from distdqn.sharded_head import ShardedQNetwork, build_sharded_q_network
from distdqn.storage.checkpoint import load_checkpoint
from distdqn.storage.object_store import fetch_checkpoint, is_remote
from distdqn.types import PriorityUpdate, SampleBatch, UpdateResult, Weights


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def merge_shard_rows(parts: tuple[SampleBatch, ...]) -> SampleBatch:
    """One training batch from every shard's rows of it. Importance weights are divided by the
    batch's largest only here, where all its rows are together, so that they only ever scale
    updates down (with one shard: exactly the weights one buffer would give)."""
    batch = (
        parts[0] if len(parts) == 1 else SampleBatch(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    )
    if not len(batch.weights):
        return batch
    return batch._replace(weights=(batch.weights / batch.weights.max()).astype(np.float32))


class Learner:
    """`restore_dir` is the run's `checkpoints/latest` (for a run on object storage, the URI of
    its pointer, so that a learner restarted on another node finds it): when it exists (a resumed
    run, or a learner restarted after a crash) the learner starts from it, otherwise from a
    seeded init (the same for every learner, and for every K: see `ShardedLinear.reset_parameters`).
    `rank` is this learner's place in the group of `placement.num_learners`."""

    def __init__(
        self,
        config: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        restore_dir: str | None = None,
        rank: int = 0,
    ) -> None:
        self.config = config.algorithm
        placement = config.placement
        self.device = resolve_device(placement.device)
        torch.set_num_threads(placement.torch_threads)
        torch.manual_seed(stream_seed(config.seed, "learner", 0))
        self.head_shards = placement.head_shards
        self.online: QTorso = (
            build_q_network(config.network, observation_space, action_space)
            if self.head_shards == 1
            else build_sharded_q_network(
                config.network, observation_space, action_space, self.head_shards, rank % self.head_shards
            )
        ).to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self._split = isinstance(self.online, ShardedQNetwork)
        self._rows_names = self.online.rows_names if isinstance(self.online, ShardedQNetwork) else ()
        # the optimizer's ids (parameter positions) of those rows
        self._rows_ids = {i for i, (name, _) in enumerate(self.online.named_parameters()) if name in self._rows_names}
        self._first_shard = rank % self.head_shards == 0
        # fused Adam is one kernel for all parameters: small networks are bound by per-op overhead
        self.optimizer = torch.optim.Adam(
            self.online.parameters(), lr=self.config.lr, eps=self.config.adam_eps, fused=True
        )
        self.mixed_precision = config.placement.learner_mixed_precision
        # one compiled graph for both forwards, the target and the loss (backward is traced too);
        # static shapes: a run has one batch shape, and inductor fails on some dynamic conv shapes
        loss = self._split_loss if self._split else self._loss
        self._compute_loss = torch.compile(loss, dynamic=False) if placement.learner_compile else loss
        self.updates = 0
        self.group = LearnerGroup(self.device, placement.num_learners, self.head_shards)
        self.restore_dir = restore_dir
        self.reload()

    def reload(self) -> int:
        """Load `restore_dir` if it exists (a resumed run, a restarted learner, or a group of
        learners starting over together after one died); return the update count it holds."""
        if self.restore_dir is not None and is_remote(self.restore_dir):
            with tempfile.TemporaryDirectory(prefix="distdqn-learner-") as temporary:
                self._load(fetch_checkpoint(self.restore_dir, Path(temporary), missing_ok=True))
        elif self.restore_dir is not None and Path(self.restore_dir).exists():
            self._load(Path(self.restore_dir))
        return self.updates

    def _load(self, directory: Path | None) -> None:
        if directory is not None:
            checkpoint = load_checkpoint(directory, self._rows_of if self._split else None)
            self.load_state_dict(checkpoint.tensors, checkpoint.state["learner"])
            self._apply_hyperparameters(int(checkpoint.state.get("counters", {}).get("env_steps", 0)))

    # -- data-parallel group (the runtime calls these by name) -------------------------------
    def listen(self, address: str, world_size: int) -> int:
        """See `LearnerGroup.listen`."""
        return self.group.listen(address, world_size)

    def meeting_file(self) -> str:
        """See `LearnerGroup.meeting_file`."""
        return self.group.meeting_file()

    def join_group(self, meeting: str, rank: int, world_size: int) -> None:
        """Join the learners' group (`LearnerGroup.join`); a split head's networks reduce over
        their replica's head group."""
        head_group = self.group.join(meeting, rank, world_size)
        if head_group is not None:
            for network in self._sharded_networks():
                network.set_group(head_group)

    def _sharded_networks(self) -> tuple[ShardedQNetwork, ShardedQNetwork]:
        return cast(ShardedQNetwork, self.online), cast(ShardedQNetwork, self.target)

    # -- updates --------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # arrays read zero-copy from a distributed object store are read-only; torch wants writable
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if self.device.type == "cuda":  # page-locked host memory lets the copy run asynchronously
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _to_device(self, batch: SampleBatch) -> tuple[torch.Tensor, ...]:
        return tuple(
            self._tensor(array)
            for array in (
                batch.observations,
                batch.actions,
                batch.returns,
                batch.discounts,
                batch.next_observations,
                batch.weights,
            )
        )

    def _loss(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        returns: torch.Tensor,
        discounts: torch.Tensor,
        next_observations: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, |TD errors|, Q(s, a)); the networks may run in bfloat16, the TD math runs in float32."""
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.mixed_precision):
            q_values = self.online(observations)
            with torch.no_grad():
                next_q_online = self.online(next_observations) if self.config.double_dqn else None
                next_q_target = self.target(next_observations)
        q_taken = q_values.float().gather(1, actions.unsqueeze(1)).squeeze(1)
        target = td_target(
            returns, discounts, next_q_target.float(), None if next_q_online is None else next_q_online.float()
        )
        loss, td = dqn_loss(q_taken, target, weights, self.config.loss)
        return loss, td, q_taken.detach()

    def _split_loss(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        returns: torch.Tensor,
        discounts: torch.Tensor,
        next_observations: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_loss` with a split head: Q(s, a), the max and the Double-DQN argmax come from
        reductions over the replica's shards (every shard computes the same loss)."""
        online, target = self._sharded_networks()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.mixed_precision):
            q_taken = online.taken(online.features(observations), actions).float()
            with torch.no_grad():
                if self.config.double_dqn:
                    _, best = online.best(online.features(next_observations))
                    bootstrap = target.taken(target.features(next_observations), best)
                else:
                    bootstrap, _ = target.best(target.features(next_observations))
        loss, td = dqn_loss(q_taken, returns + discounts * bootstrap.float(), weights, self.config.loss)
        return loss, td, q_taken.detach()

    def update(self, env_steps: int, *per_shard: list[SampleBatch]) -> UpdateResult:
        """One gradient step per batch; returns their |TD errors| as new priorities, in order.

        `env_steps` is the loop's env-step count when it issued these updates; the learning rate
        follows it (`schedules.learning_rate`), so a resumed run continues the schedule exactly.
        Each further argument is one shard's rows of every batch of the chunk (the rows the loop
        planned to draw from it); batch b is the rows b of all of them, its weights divided by its
        largest. Every batch is handed to the device before the first step, and results are read
        back once after the last, so on a GPU the copies and steps queue up without a stall
        between steps (the host waits once per group, not once per step)."""
        lr = self._apply_hyperparameters(env_steps)
        batches = [merge_shard_rows(parts) for parts in zip(*per_shard, strict=True)]
        on_device = [self._to_device(batch) if len(batch.actions) else None for batch in batches]
        outcomes = [self._step(tensors) for tensors in on_device]
        td_parts = [td for td, _ in outcomes if td is not None]
        priorities = torch.cat(td_parts).double().cpu().numpy() if td_parts else np.zeros(0)
        last = next((stats for _, stats in reversed(outcomes) if stats is not None), None)
        metrics = {} if last is None else {"loss": last[0].item(), "q_mean": last[1].mean().item(), "lr": lr}
        indices = np.concatenate([batch.indices for batch in batches])
        stamps = np.concatenate([batch.stamps for batch in batches])
        shards = np.concatenate([batch.shards for batch in batches])
        return UpdateResult(PriorityUpdate(indices, stamps, shards, priorities), metrics)

    def _apply_hyperparameters(self, env_steps: int) -> float:
        """Set the optimizer's learning rate (its schedule at `env_steps`) and epsilon from the
        config. A restored optimizer state carries the saved run's values; a run resumed or
        exploited (PBT) with other hyperparameters must train with its own from the first step."""
        algorithm = self.config
        lr = learning_rate(algorithm.lr, algorithm.lr_end, algorithm.lr_decay_steps, env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["eps"] = algorithm.adam_eps
        return lr

    def _step(self, tensors: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor | None, tuple | None]:
        """One gradient step; returns (|TD errors|, (loss, Q(s, a))) as device tensors. An empty
        batch (a shard restarted empty) makes no step of its own but still joins the all-reduce,
        so that the other learners can go on."""
        algorithm = self.config
        self.optimizer.zero_grad(set_to_none=True)
        td, stats = None, None
        if tensors is not None:
            with self.group.collective() if self._split else nullcontext():
                loss, td, q_taken = self._compute_loss(*tensors)
                loss.backward()
            stats = (loss.detach(), q_taken)
        step = tensors is not None
        if self.group.replicas > 1:
            step = self.group.average_gradients(list(self.online.parameters()), step)
        if step:
            if algorithm.max_grad_norm > 0:
                self._clip_gradients(algorithm.max_grad_norm)
            self.optimizer.step()
            self.updates += 1
            if self.updates % algorithm.target_update_interval == 0:
                update_target(self.target, self.online, algorithm.tau)
        return td, stats

    def _clip_gradients(self, max_norm: float) -> None:
        """Scale the gradients to a total norm of at most `max_norm` (a split head's over all shards)."""
        if self._split:
            with self.group.collective():
                self._sharded_networks()[0].clip_gradients(max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), max_norm, foreach=True)

    def weights(self) -> Weights | None:
        """The online network as NumPy arrays, versioned by the update count. A split head is
        gathered whole (all shards of the replica call this together) on its first shard; the
        others return None."""
        state = self._whole(self.online)
        if state is None:
            return None
        return Weights(  # a gathered head is a fresh tensor; the rest is the live network, so copied
            self.updates,
            {
                name: value.cpu().numpy() if name in self._rows_names else value.detach().cpu().numpy().copy()
                for name, value in state.items()
            },
        )

    def _whole(self, network: QTorso) -> dict[str, torch.Tensor] | None:
        """`network`'s state dict; a split head's rows gathered into the whole head on the first
        shard (None on the others)."""
        state = network.state_dict()
        if not isinstance(network, ShardedQNetwork):
            return state
        with self.group.collective():
            gathered = {name: network.rows.gather(value) for name, value in state.items() if name in network.rows_names}
        if not self._first_shard:
            return None
        return state | {name: value for name, value in gathered.items() if value is not None}

    def _my_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """This shard's rows of a whole head's tensor (weight, bias or an Adam moment); a tensor
        of this shard's rows already (read with `_rows_of`) as it is."""
        rows = self._sharded_networks()[0].rows
        return tensor[rows.start : rows.stop] if len(tensor) == rows.num_actions else tensor

    def _rows_of(self, name: str) -> slice | None:
        """Which rows of checkpoint tensor `name` this learner needs: its block of the head's
        tensors and their Adam moments, all of the rest."""
        rows = self._sharded_networks()[0].rows
        copy, _, rest = name.partition(".")
        if copy in ("online", "target") and rest in self._rows_names:
            return slice(rows.start, rows.stop)
        param_id, _, moment = rest.partition(".")
        if copy == "optimizer" and moment in ("exp_avg", "exp_avg_sq") and int(param_id) in self._rows_ids:
            return slice(rows.start, rows.stop)
        return None

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
        """Tensors (networks and optimizer moments) and JSON-able state, for a checkpoint. With a
        split head, this shard's rows: its state names them under "head_rows", and
        `join_head_rows` makes the whole network of every shard's, so that a checkpoint always
        holds the whole head and loads at any K (no learner ever holds it all)."""
        tensors = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        optimizer = self.optimizer.state_dict()
        rows = self._rows_ids
        head_rows = [f"{copy}.{name}" for copy in ("online", "target") for name in self._rows_names]
        for param_id, state in optimizer["state"].items():
            for name, value in state.items():
                tensors[f"optimizer.{param_id}.{name}"] = value = torch.as_tensor(value)
                if param_id in rows and value.dim():
                    head_rows.append(f"optimizer.{param_id}.{name}")
        learner = {"updates": self.updates, "param_groups": optimizer["param_groups"]}
        return tensors, learner | ({"head_rows": head_rows} if self._split else {})

    def load_state_dict(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Load a checkpoint's whole network; with a split head, this shard's rows of it."""

        def section(part: str) -> dict[str, torch.Tensor]:
            return {
                k[len(part) :]: self._my_rows(v) if k[len(part) :] in self._rows_names else v
                for k, v in tensors.items()
                if k.startswith(part)
            }

        self.online.load_state_dict(section("online."))
        self.target.load_state_dict(section("target."))
        rows = self._rows_ids
        optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in section("optimizer.").items():
            param_id, name = key.split(".", 1)
            mine = self._my_rows(value) if int(param_id) in rows and value.dim() else value
            optimizer_state.setdefault(int(param_id), {})[name] = mine
        self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": state["param_groups"]})
        self.updates = int(state["updates"])
