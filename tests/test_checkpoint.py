"""Checkpoints: atomic replacement, safetensors + JSON only, clear errors when damaged."""

import json
from pathlib import Path

import pytest
import torch

from distdqn.checkpoint import load_checkpoint, save_checkpoint
from distdqn.config import resolve_config
from distdqn.errors import CheckpointError


def _save(directory: Path, value: float) -> Path:
    config = resolve_config("CartPole-v1")
    return save_checkpoint(directory, "latest", config, {"w": torch.full((2, 2), value)}, {"counters": {"n": value}})


def test_round_trip(tmp_path: Path):
    link = _save(tmp_path, 1.0)
    checkpoint = load_checkpoint(link)
    assert torch.equal(checkpoint.tensors["w"], torch.ones(2, 2))
    assert checkpoint.state["counters"] == {"n": 1.0}
    assert checkpoint.config == resolve_config("CartPole-v1")


def test_new_version_replaces_the_old_atomically_and_cleans_up(tmp_path: Path):
    _save(tmp_path, 1.0)
    first_target = (tmp_path / "latest").resolve()
    _save(tmp_path, 2.0)
    assert (tmp_path / "latest").is_symlink()
    assert not first_target.exists()
    assert torch.equal(load_checkpoint(tmp_path / "latest").tensors["w"], torch.full((2, 2), 2.0))
    assert len([p for p in tmp_path.iterdir() if not p.is_symlink()]) == 1


def test_missing_checkpoint(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


def test_incomplete_checkpoint(tmp_path: Path):
    link = _save(tmp_path, 1.0)
    (link / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json is missing"):
        load_checkpoint(link)


def test_corrupt_tensors_file(tmp_path: Path):
    link = _save(tmp_path, 1.0)
    (link / "tensors.safetensors").write_bytes(b"\x80\x04 not a tensor file")
    with pytest.raises(CheckpointError, match="tensors.safetensors is corrupt"):
        load_checkpoint(link)


def test_corrupt_state_file(tmp_path: Path):
    link = _save(tmp_path, 1.0)
    (link / "state.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="state.json is corrupt"):
        load_checkpoint(link)
    (link / "state.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format 1"):
        load_checkpoint(link)


def test_a_pickle_is_never_loaded(tmp_path: Path):
    link = _save(tmp_path, 1.0)
    marker = tmp_path / "executed"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (link / "tensors.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(link)
    assert not marker.exists()


def test_leftovers_of_an_interrupted_save_are_cleaned_by_the_next(tmp_path: Path):
    _save(tmp_path, 1.0)
    (tmp_path / ".latest-0123456789ab").mkdir()  # a version a crash left half written
    (tmp_path / ".latest-0123456789ab" / "tensors.safetensors").write_bytes(b"half")
    _save(tmp_path, 2.0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".latest")) == [
        (tmp_path / "latest").resolve().name]
    assert (tmp_path / "best").exists() is False
