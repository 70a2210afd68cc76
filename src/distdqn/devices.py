"""Whether this machine has the torch devices a config asks for, checked before a run writes anything.

Without the check, `placement.device=cuda` on a CPU-only torch fails deep inside the learner's
constructor, with torch's traceback, after the run directory was made (and a retry is then
refused as a used directory). The check only speaks for this machine: roles placed on a Ray
cluster joined by address run on its nodes, whose devices are not ours to see.
"""

from __future__ import annotations

import os

import torch

from distdqn.config import Config
from distdqn.errors import UserError


def roles_run_here(config: Config) -> bool:
    """Whether the learner runs on this machine: in this process (inline, threads) or on an
    embedded Ray cluster, not on a cluster joined by `placement.address` or RAY_ADDRESS."""
    placement = config.placement
    return placement.runtime != "ray" or not (placement.address or os.environ.get("RAY_ADDRESS"))


def _cuda_here() -> str:
    """How many CUDA devices this machine has, and why none, for a message."""
    if torch.version.cuda is None:
        return f"none (torch {torch.__version__} is built without CUDA)"
    count = torch.cuda.device_count()
    if count == 0:
        return f"none (torch {torch.__version__} with CUDA {torch.version.cuda} finds no device)"
    return f"{count} (cuda:0 to cuda:{count - 1})" if count > 1 else "1 (cuda:0)"


def check_device(field: str, name: str) -> None:
    """Raise `UserError` naming `field` and the device `name` (cpu, auto, cuda, cuda:N, mps)
    when this machine cannot run it, saying what the machine has instead."""
    if name in ("cpu", "auto"):
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{field}={name!r} is no torch device; use cpu, cuda or auto") from None
    if device.type == "cuda":
        index = device.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            wanted = "a CUDA device" if device.index is None else f"CUDA device {index}"
            raise UserError(f"{field}={name!r} needs {wanted}; this machine has {_cuda_here()}; use cpu or auto")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"{field}={name!r} needs an Apple GPU (MPS); this machine has none; use cpu or auto")
    elif device.type != "cpu":
        raise UserError(f"{field}={name!r}: distdqn runs on cpu, cuda or mps; use cpu or auto")


def check_devices(config: Config) -> None:
    """Refuse a config whose devices this machine lacks (`UserError` naming the field, its value
    and what the machine has). `placement.device` is the learner's, the only role with a device
    setting (actors, shards and the evaluator run on the CPU). Roles on a Ray cluster joined by
    address are not checked: they run on its nodes."""
    if roles_run_here(config):
        check_device("placement.device", config.placement.device)
