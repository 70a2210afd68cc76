"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a directory. `checkpoints/latest` and `checkpoints/best` are symlinks to the
directory of their current version; a new version is written and synced in full under a hidden
name, then the link is swapped with one atomic rename, so a reader (or a crash at any instant)
only ever sees a complete checkpoint. Loading reads safetensors and JSON and never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from distdqn.config import Config, config_to_toml, load_config_toml
from distdqn.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.toml"


class Checkpoint(NamedTuple):
    config: Config
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(
    checkpoints_dir: Path, name: str, config: Config, tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> Path:
    """Write a complete checkpoint and atomically point `checkpoints_dir/name` at it."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    version_dir = checkpoints_dir / f".{name}-{uuid.uuid4().hex[:12]}"
    version_dir.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, version_dir / TENSORS_FILE)
    (version_dir / STATE_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **state}, indent=1))
    (version_dir / CONFIG_FILE).write_text(config_to_toml(config))
    for path in (*version_dir.iterdir(), version_dir):
        _fsync(path)
    link = checkpoints_dir / name
    temporary_link = checkpoints_dir / f".{name}-link-{uuid.uuid4().hex[:12]}"
    temporary_link.symlink_to(version_dir.name, target_is_directory=True)
    os.replace(temporary_link, link)
    _fsync(checkpoints_dir)
    # older versions, and halves of versions a crash interrupted, are no longer pointed at
    for stale in checkpoints_dir.glob(f".{name}-*"):
        if stale.name != version_dir.name:
            if stale.is_symlink() or stale.is_file():
                stale.unlink(missing_ok=True)
            else:
                shutil.rmtree(stale, ignore_errors=True)
    return link


def load_checkpoint(directory: Path) -> Checkpoint:
    """Read a checkpoint directory, with a one-line `CheckpointError` if it is missing or damaged."""
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory}")
    for file_name in (TENSORS_FILE, STATE_FILE, CONFIG_FILE):
        if not (directory / file_name).is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {file_name} is missing")
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {directory}: {STATE_FILE} is corrupt ({error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {directory}: {STATE_FILE} is not a distdqn checkpoint of format {FORMAT_VERSION}")
    try:
        tensors = load_file(directory / TENSORS_FILE)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {directory}: {TENSORS_FILE} is corrupt ({error})") from None
    try:
        config = load_config_toml(directory / CONFIG_FILE)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {directory}: {error}") from None
    return Checkpoint(config, tensors, state)
