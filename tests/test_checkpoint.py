"""Checkpoints: atomic replacement, safetensors + JSON only, clear errors when damaged."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from distdqn.config import resolve_config
from distdqn.errors import CheckpointError
from distdqn.storage.checkpoint import load_checkpoint, resume_point, save_checkpoint


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
    _rewrite_manifest(link)  # a well-formed checkpoint of another format
    with pytest.raises(CheckpointError, match="format 2"):
        load_checkpoint(link)


def _rewrite_manifest(link: Path) -> None:
    files = {
        name: {"sha256": hashlib.sha256((link / name).read_bytes()).hexdigest(), "size": (link / name).stat().st_size}
        for name in ("tensors.safetensors", "state.json", "config.toml")
    }
    (link / "manifest.json").write_text(json.dumps({"files": files}))


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
        (tmp_path / "latest").resolve().name
    ]
    assert (tmp_path / "best").exists() is False


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend"])
def test_a_file_that_does_not_match_the_manifest_is_refused(tmp_path: Path, damage: str):
    link = _save(tmp_path, 1.0)
    tensors = link / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    if damage == "truncate":
        data = data[:-4]
    elif damage == "flip":
        data[-1] ^= 0xFF
    else:
        data += b"\0"
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensors.safetensors is corrupt .* does not match manifest.json"):
        load_checkpoint(link)


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path: Path):
    config = resolve_config("CartPole-v1")
    with pytest.raises(ValueError, match="NaN or inf"):
        save_checkpoint(tmp_path, "latest", config, {"w": torch.tensor([1.0, float("nan")])}, {})
    assert not (tmp_path / "latest").exists()
    link = save_checkpoint(tmp_path, "latest", config, {"w": torch.tensor([1.0, 2.0])}, {})
    from safetensors.torch import save_file

    save_file({"w": torch.tensor([1.0, float("inf")])}, link / "tensors.safetensors")
    _rewrite_manifest(link)  # even a checkpoint whose manifest agrees
    with pytest.raises(CheckpointError, match="hold NaN or inf"):
        load_checkpoint(link)


def test_a_link_that_points_outside_the_checkpoints_is_refused(tmp_path: Path):
    elsewhere = _save(tmp_path / "other", 1.0).resolve()
    (tmp_path / "run").mkdir()
    os.symlink(elsewhere, tmp_path / "run" / "latest")
    with pytest.raises(CheckpointError, match="outside"):
        load_checkpoint(tmp_path / "run" / "latest")


def test_keep_holds_the_newest_versions(tmp_path: Path):
    config = resolve_config("CartPole-v1")
    for value in range(5):
        save_checkpoint(tmp_path, "latest", config, {"w": torch.full((1,), float(value))}, {}, keep=3)
        os.utime((tmp_path / "latest").resolve(), (value, value))  # distinct times, oldest first
    versions = sorted((p for p in tmp_path.iterdir() if p.name.startswith(".latest-")), key=os.path.getmtime)
    assert [float(load_checkpoint(p).tensors["w"]) for p in versions] == [2.0, 3.0, 4.0]


def test_integer_tensors_are_refused(tmp_path: Path):
    """An int64 copy of a network's weights loaded, rounded, into the float network (and scored)."""
    config = resolve_config("CartPole-v1")
    link = save_checkpoint(tmp_path, "latest", config, {"w": torch.ones(2, dtype=torch.int64)}, {})
    with pytest.raises(CheckpointError, match="tensor w is torch.int64, not floating point"):
        load_checkpoint(link)


def test_a_checkpoints_directory_that_is_a_link_is_refused(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "checkpoints").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="is a link to"):
        _save(tmp_path / "checkpoints", 1.0)
    assert not list((tmp_path / "elsewhere").iterdir())


def _versions(directory: Path, *values: float) -> list[Path]:
    """Versions of `latest` holding `values`, oldest first; `latest` names the last."""
    config = resolve_config("CartPole-v1")
    versions = []
    for value in values:
        state = {"counters": {"env_steps": int(value)}}
        save_checkpoint(directory, "latest", config, {"w": torch.full((1,), value)}, state, keep=len(values))
        versions.append((directory / "latest").resolve())
    return versions


@pytest.mark.parametrize("how", ["dangling", "looping", "missing"])
def test_a_broken_latest_resumes_from_the_newest_version_that_verifies(tmp_path: Path, how: str):
    first, second, third = _versions(tmp_path, 1.0, 2.0, 3.0)
    (tmp_path / "latest").unlink()
    if how != "missing":
        (tmp_path / "latest").symlink_to(".latest-gone" if how == "dangling" else "latest")
    (third / "state.json").write_text("{}")  # the newest no longer matches its manifest
    assert resume_point(tmp_path) == second
    (second / "tensors.safetensors").unlink()
    assert resume_point(tmp_path) == first


def test_an_intact_latest_is_the_resume_point(tmp_path: Path):
    _versions(tmp_path, 1.0, 2.0)
    assert resume_point(tmp_path) == tmp_path / "latest"


def test_no_checkpoint_or_only_half_of_one_is_no_resume_point(tmp_path: Path):
    assert resume_point(tmp_path / "checkpoints") is None
    (version,) = _versions(tmp_path, 1.0)
    (tmp_path / "latest").unlink()
    (version / "manifest.json").unlink()  # killed before the manifest: half a version
    assert resume_point(tmp_path) is None


@pytest.mark.parametrize("how", ["dangling", "none verifies", "not a link"])
def test_a_broken_latest_with_no_version_that_verifies_is_refused(tmp_path: Path, how: str):
    (version,) = _versions(tmp_path, 1.0)
    (tmp_path / "latest").unlink()
    if how == "dangling":
        shutil.rmtree(version)
        (tmp_path / "latest").symlink_to(version.name)
        message = "is a broken link and it has no complete version"
    elif how == "none verifies":
        (version / "config.toml").write_text("")
        message = r"is missing and none of its 1 versions verifies \(.*config.toml is corrupt"
    else:
        (tmp_path / "latest").write_text("")
        message = "is not a link to a version"
    with pytest.raises(CheckpointError, match=message):
        resume_point(tmp_path)
