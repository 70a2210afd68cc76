"""`check_devices`: a config's devices against what this machine has, with torch's view of the
machine replaced so that every case runs on any machine."""

import pytest
import torch

from distdqn.config import resolve_config
from distdqn.devices import check_device, check_devices
from distdqn.errors import UserError


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:1"])
def test_devices_the_machine_has_pass(two_gpus: None, name: str):
    check_device("placement.device", name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda:2", "placement.device='cuda:2' needs CUDA device 2; this machine has 2 (cuda:0 to cuda:1)"),
        ("cuda:7", "needs CUDA device 7; this machine has 2 (cuda:0 to cuda:1); use cpu or auto"),
        ("tpu", "placement.device='tpu' is no torch device"),
    ],
)
def test_a_device_beyond_the_machine_is_named_with_what_it_has(two_gpus: None, name: str, message: str):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_device("placement.device", name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda", "placement.device='cuda' needs a CUDA device; this machine has none (torch {} with CUDA 12.4 finds"),
        ("mps", "placement.device='mps' needs an Apple GPU (MPS); this machine has none; use cpu or auto"),
    ],
)
def test_a_gpu_on_a_machine_without_one(no_gpu: None, name: str, message: str):
    with pytest.raises(UserError) as error:
        check_device("placement.device", name)
    assert str(error.value).startswith(message.format(torch.__version__))


def test_a_cluster_joined_by_address_is_not_this_machine(no_gpu: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    joined = resolve_config(None, None, ["placement.runtime=ray", "placement.address=10.0.0.1:6379"])
    check_devices(joined.model_copy(update={"placement": joined.placement.model_copy(update={"device": "cuda"})}))
    embedded = resolve_config(None, None, ["placement.runtime=ray", "placement.device=cuda"])
    with pytest.raises(UserError, match="placement.device='cuda'"):
        check_devices(embedded)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # where an embedded cluster is not started either
    check_devices(embedded)
    inline = resolve_config(None, None, ["placement.device=cuda"])
    with pytest.raises(UserError, match="placement.device='cuda'"):
        check_devices(inline)  # inline and threads run the learner in this process
