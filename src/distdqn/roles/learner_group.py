"""How learners meet and talk: the torch.distributed group of `placement.num_learners` learners
(gloo on CPU, nccl on GPU), its sub-groups for a split head, and the gradient all-reduce.

A split head (`placement.head_shards = K > 1`) makes each data-parallel replica K learners that
hold one row block each: the replica's K learners form a head group (its shards' reductions), and
the learners of all replicas that hold the same rows form a data group (their gradients' average).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


class LearnerGroupBroken(RuntimeError):
    """The learners' all-reduce group lost a member (or this learner is not in it yet)."""


def loopback_interface() -> str:
    """The name of this host's loopback interface ("lo" on Linux, "lo0" on macOS)."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return names[0] if names else "lo"


def listening_store(address: str, world_size: int, port: int = 0) -> dist.TCPStore:
    """torch.distributed's TCP store listening on `address` only (at `port`, 0: a free one):
    torch alone would bind every interface, so the listening socket is made here and handed over."""
    host = address.strip("[]")
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    port = listener.getsockname()[1]
    return dist.TCPStore(host, port, world_size, True, wait_for_workers=False, master_listen_fd=listener.detach())


class LearnerGroup:
    """One learner's membership of the learners' group. A lone learner (`num_learners` 1) is in
    its group from the start; the others join together (`join`) before their first update."""

    def __init__(self, device: torch.device, num_learners: int, head_shards: int) -> None:
        self.device = device
        self.head_shards = head_shards
        self.replicas = num_learners // head_shards
        self.joined = num_learners == 1
        self._data_group: Any = None  # the learners that hold the same rows as this one
        self._meeting_dir: tempfile.TemporaryDirectory | None = None
        self._store: Any = None  # learner 0's TCP store, for learners on several nodes (`listen`)

    def listen(self, address: str, world_size: int) -> int:
        """Open the group's TCP store here, listening on `address` (this node's cluster address)
        only, for learners on several nodes to meet at; return its port."""
        self._store = listening_store(address, world_size)
        return int(self._store.port)

    def meeting_file(self) -> str:
        """A fresh path in a private directory of this learner's, for learners on one node to
        form their group at (torch.distributed's FileStore): no TCP store listening."""
        if self._meeting_dir is None:
            self._meeting_dir = tempfile.TemporaryDirectory(prefix="distdqn-learners-")
        return str(Path(self._meeting_dir.name) / f"group-{uuid.uuid4().hex}")

    def join(self, meeting: str, rank: int, world_size: int) -> Any:
        """Join the process group, met at `meeting`: `file://PATH` (all on one node) or
        `tcp://HOST:PORT`, the store learner 0 opened with `listen` (or opens there now, bound to
        HOST only); with a split head also its sub-groups. Returns this learner's head group
        (None without a split head). All learners must call this at the same time (every process
        creates every sub-group, in the same order)."""
        if dist.is_initialized():
            dist.destroy_process_group()
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if meeting.startswith("file://"):  # all on one node: gloo's connections on loopback too
            os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
            dist.init_process_group(backend, init_method=meeting, rank=rank, world_size=world_size)
        else:
            host, _, port = meeting.removeprefix("tcp://").rpartition(":")
            if rank != 0:
                store = dist.TCPStore(host.strip("[]"), int(port), world_size, False)
            else:
                store = self._store if self._store is not None else listening_store(host, world_size, int(port))
            self._store = None  # the group holds it, and closes it when it is destroyed
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
        shards = self.head_shards
        self.replicas = world_size // shards
        head_group = None
        if shards > 1:
            heads = [dist.new_group(list(range(r * shards, (r + 1) * shards))) for r in range(self.replicas)]
            head_group = heads[rank // shards]
            if self.replicas > 1:
                same_rows = [dist.new_group(list(range(k, world_size, shards))) for k in range(shards)]
                self._data_group = same_rows[rank % shards]
        self.joined = True
        return head_group

    @contextmanager
    def collective(self) -> Iterator[None]:
        """Calls into the group: a dead peer (gloo sees its connection close) breaks the group."""
        if not self.joined:
            raise LearnerGroupBroken("this learner has not joined the learners' group")
        try:
            yield
        except RuntimeError as error:
            if not dist.is_initialized():
                raise
            self.joined = False
            raise LearnerGroupBroken(str(error).splitlines()[0]) from None

    def average_gradients(self, parameters: list[torch.Tensor], has_data: bool) -> bool:
        """Average `parameters`' gradients over the learners (of the same rows) that had data;
        False if none had any."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([float(has_data)], device=self.device)])
        with self.collective():
            dist.all_reduce(flat, group=self._data_group)
        contributors = flat[-1].item()
        if contributors == 0:
            return False
        flat = flat[:-1] / contributors
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = flat[offset : offset + size].view_as(parameter).clone()
            offset += size
        return True
