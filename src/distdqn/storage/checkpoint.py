"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically, verified.

A checkpoint is a directory. `checkpoints/latest` and `checkpoints/best` are symlinks to the
directory of their current version; a new version is written and synced in full under a hidden
name, with a `manifest.json` holding the SHA-256 and size of every file, then the link is swapped
with one atomic rename, so a reader (or a crash at any instant) only ever sees a complete
checkpoint. Loading follows links only within the checkpoints directory, checks every file
against the manifest, refuses tensors that hold NaN or inf or are not floating point, and never
unpickles. A version is only ever written into a directory just made for it, its files created
new (see distdqn.storage.run_files), so no file of it is written through a link.

A run resumes from the version `latest` names; where that link is broken (dangling, looping), from
the newest complete version that verifies (`resume_point`), never from nothing: a run that has
a checkpoint does not start over.

A checkpoint that resumes exactly also holds every role's state (`resume.json`, whose arrays,
the replay among them, are compressed `.npy` files under `resume/`); it is read only by
`--resume`, so loading weights to evaluate never touches the replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from distdqn.config import Config, config_to_toml, load_config_toml
from distdqn.errors import CheckpointError, ConfigError
from distdqn.state_tree import join_arrays, split_arrays
from distdqn.storage.array_files import array_file_name, read_array, write_array
from distdqn.storage.run_files import create_file, refuse_unless_directory
from distdqn.types import Weights

FORMAT_VERSION = 2
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.toml"
MANIFEST_FILE = "manifest.json"
CONTENT_FILES = (TENSORS_FILE, STATE_FILE, CONFIG_FILE)
RESUME_FILE = "resume.json"
RESUME_DIR = "resume"


class Checkpoint(NamedTuple):
    config: Config
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


def online_weights(checkpoint: Checkpoint) -> Weights:
    """The checkpoint's online Q-network as roles pass weights (version 0): what evaluate, play
    and export act with."""
    tensors = checkpoint.tensors
    return Weights(0, {k.removeprefix("online."): v.numpy() for k, v in tensors.items() if k.startswith("online.")})


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return {"sha256": sha.hexdigest(), "size": path.stat().st_size}


def not_floating(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of tensors that are not floating point: network weights and optimizer moments all are
    (an int64 copy of a network's weights would load, rounded, into a float network)."""
    return sorted(name for name, value in tensors.items() if not value.is_floating_point())


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf: such weights are no checkpoint."""
    return sorted(
        name for name, value in tensors.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())
    )


def save_checkpoint(
    checkpoints_dir: Path,
    name: str,
    config: Config,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 1,
    resume: dict[str, Any] | None = None,
    codec: str = "zstd",
) -> Path:
    """Write a complete checkpoint and atomically point `checkpoints_dir/name` at it; keep the
    `keep` newest versions of `name`. Refuses (ValueError) tensors that are not finite.
    `resume`: the roles' states (see `distdqn.state_tree`), arrays compressed with `codec`."""
    bad = non_finite(tensors)
    if bad:
        raise ValueError(f"tensors {bad[:3]} hold NaN or inf")
    _make_checkpoints_dir(checkpoints_dir)
    version_dir = checkpoints_dir / f".{name}-{uuid.uuid4().hex[:12]}"
    version_dir.mkdir()  # new, so that every file in it is ours
    try:
        _write_version(version_dir, config, tensors, state, resume, codec)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)  # half a version would only take space (a full disk's)
        raise
    return _publish(checkpoints_dir, name, version_dir, keep)


def _make_checkpoints_dir(checkpoints_dir: Path) -> None:
    """The run's checkpoints directory, made if missing; a link in its place is refused."""
    if refuse_unless_directory(checkpoints_dir) is None:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)  # `best` and `latest` may both make it at once
        refuse_unless_directory(checkpoints_dir)


def _publish(checkpoints_dir: Path, name: str, version_dir: Path, keep: int) -> Path:
    """Point `checkpoints_dir/name` at the complete `version_dir`, then remove old versions."""
    link = point_link(checkpoints_dir, name, version_dir.name)
    _remove_old_versions(checkpoints_dir.glob(f".{name}-*"), version_dir, keep)
    return link


def point_link(checkpoints_dir: Path, name: str, target: str) -> Path:
    """Make `checkpoints_dir/name` a link to `target` (a version's name) with one atomic rename
    of a new link over it; whatever was there (a broken link) is replaced, never followed."""
    link = checkpoints_dir / name
    temporary_link = checkpoints_dir / f".{name}-link-{uuid.uuid4().hex[:12]}"
    temporary_link.symlink_to(target, target_is_directory=True)
    os.replace(temporary_link, link)
    _fsync(checkpoints_dir)
    return link


def resume_point(checkpoints_dir: Path, name: str = "latest") -> Path | None:
    """The checkpoint a run resumes from: `checkpoints_dir/name` when it links to a version
    (loading checks it); where that link is missing or broken (dangling, looping, or no link),
    the newest complete version of `name` (most env steps, then newest) that verifies, as
    `load_checkpoint` checks it. None when there is neither a link nor a complete version: the
    run never finished a checkpoint (a half-written version, without its manifest, is none).
    Refused in one line: a broken link, or complete versions, none of which verifies; and a
    file or directory that is no link in the link's place."""
    link = checkpoints_dir / name
    if link.is_symlink() and link.is_dir():
        return link
    if os.path.lexists(link) and not link.is_symlink():  # a new version could not be linked in its place
        raise CheckpointError(f"checkpoint {link} is not a link to a version of it")
    complete = _complete_versions(checkpoints_dir, name)
    verified: list[tuple[int, float, str]] = []
    errors: list[str] = []
    for version in complete:
        try:
            counters = load_checkpoint(version).state.get("counters")
        except CheckpointError as error:
            errors.append(str(error))
            continue
        steps = counters.get("env_steps") if isinstance(counters, dict) else None
        verified.append((steps if type(steps) is int else -1, version.lstat().st_mtime, version.name))
    if verified:
        return checkpoints_dir / max(verified)[2]
    broken = os.path.lexists(link)
    if not broken and not complete:
        return None
    what = f"{link} is a broken link" if broken else f"{link} is missing"
    found = f"none of its {len(complete)} versions verifies ({errors[0]})" if errors else "it has no complete version"
    raise CheckpointError(f"cannot resume: {what} and {found}")


def _complete_versions(checkpoints_dir: Path, name: str) -> list[Path]:
    """The versions of `name` written in full: directories (not links) holding a manifest."""
    complete = []
    for path in checkpoints_dir.glob(f".{name}-*"):
        try:
            if stat.S_ISDIR(path.lstat().st_mode) and stat.S_ISREG((path / MANIFEST_FILE).lstat().st_mode):
                complete.append(path)
        except FileNotFoundError:
            continue
    return sorted(complete)


def adopt_checkpoint(source: Path, checkpoints_dir: Path, name: str = "latest", keep: int = 1) -> Path:
    """Make a copy of another run's checkpoint `source` this run's `name` (a PBT exploit takes
    the donor's): checked against its manifest first, copied in full, then published atomically."""
    load_checkpoint(source)
    _make_checkpoints_dir(checkpoints_dir)
    version_dir = checkpoints_dir / f".{name}-{uuid.uuid4().hex[:12]}"
    try:
        shutil.copytree(_resolve_within(source), version_dir)
        for path in sorted(version_dir.rglob("*"), reverse=True):
            _fsync(path)
        _fsync(version_dir)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    return _publish(checkpoints_dir, name, version_dir, keep)


def copy_checkpoint(source: Path, destination: Path, replay: bool = False) -> None:
    """A standalone copy of checkpoint `source` at `destination` (`DQN.save`), verified first,
    written in full under a hidden name beside it, then renamed into place. Without `replay` it
    holds the weights, optimizer, counters and config, and not the roles' state (the replay).
    An existing `destination` is replaced only if it is a checkpoint itself."""
    load_checkpoint(source)
    version = _resolve_within(source)
    if destination.is_symlink() or (destination.exists() and not (destination / MANIFEST_FILE).is_file()):
        raise CheckpointError(f"{destination} exists and is not a checkpoint: not replacing it")
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if replay:
            shutil.copytree(version, temporary)
        else:
            temporary.mkdir()
            for name in CONTENT_FILES:
                shutil.copyfile(version / name, temporary / name)
            manifest = {"files": {name: _digest(temporary / name) for name in CONTENT_FILES}}
            create_file(temporary / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
        for path in sorted(temporary.rglob("*"), reverse=True):
            _fsync(path)
        _fsync(temporary)
        previous = temporary.with_name(f"{temporary.name}.old")
        if destination.exists():
            os.replace(destination, previous)
        os.replace(temporary, destination)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _write_version(
    version_dir: Path,
    config: Config,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    resume: dict[str, Any] | None,
    codec: str,
) -> None:
    """Every file of a checkpoint version, its manifest last, all synced to disk."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, version_dir / TENSORS_FILE)
    state_text = json.dumps({"format": FORMAT_VERSION, **state}, indent=1, allow_nan=False)
    create_file(version_dir / STATE_FILE, state_text.encode())
    create_file(version_dir / CONFIG_FILE, config_to_toml(config).encode())
    files = list(CONTENT_FILES)
    if resume is not None:
        files += _write_resume_state(version_dir, resume, codec)
    manifest = {"files": {file_name: _digest(version_dir / file_name) for file_name in files}}
    create_file(version_dir / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
    for file_name in (*files, MANIFEST_FILE):
        _fsync(version_dir / file_name)
    for directory in (version_dir / RESUME_DIR, version_dir):
        if directory.is_dir():
            _fsync(directory)


def _write_resume_state(version_dir: Path, resume: dict[str, Any], codec: str) -> list[str]:
    """Write `resume.json` and its arrays; return the files written, relative to `version_dir`."""
    tree, arrays = split_arrays(resume)
    (version_dir / RESUME_DIR).mkdir()
    files = {name: f"{RESUME_DIR}/{array_file_name(name, codec)}" for name in arrays}
    for name, array in arrays.items():
        write_array(version_dir / files[name], array)
    # an env's own float state may hold NaN or inf: Python's JSON reads them back (this file is ours)
    create_file(version_dir / RESUME_FILE, json.dumps({"tree": tree, "arrays": files}).encode())
    return [RESUME_FILE, *files.values()]


class CheckpointWriter:
    """Writes checkpoints on a thread of its own, one at a time, so that training goes on while
    a large replay is compressed and written. A write's error is raised by the next `submit` or
    by `wait`; what it was writing never becomes `latest` (see `save_checkpoint`).

    `after_save(link)` runs on the same thread once a checkpoint is complete (a run on object
    storage uploads it there), so the next checkpoint also waits for it."""

    def __init__(self, after_save: Callable[[Path], None] | None = None) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: Future | None = None
        self._after_save = after_save

    def submit(self, *args: Any, **kwargs: Any) -> None:
        """`save_checkpoint(*args, **kwargs)` once the previous write is done."""
        self.wait()
        self._pending = self._thread.submit(self._save, *args, **kwargs)

    def _save(self, *args: Any, **kwargs: Any) -> Path:
        link = save_checkpoint(*args, **kwargs)
        if self._after_save is not None:
            self._after_save(link)
        return link

    def wait(self) -> None:
        """Block until the write in progress is done; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._thread.shutdown(wait=True)


def _remove_old_versions(candidates: Iterable[Path], current: Path, keep: int) -> None:
    """Keep the current version and the `keep - 1` newest complete ones before it; remove older
    versions and the halves of versions a crash interrupted (no manifest)."""
    versions: list[Path] = []
    stale: list[Path] = []
    for path in candidates:
        if path == current:
            continue
        complete = path.is_dir() and not path.is_symlink() and (path / MANIFEST_FILE).is_file()
        (versions if complete else stale).append(path)
    versions.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for path in stale + versions[keep - 1 :]:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _resolve_within(directory: Path) -> Path:
    """The version directory a `latest`/`best` link names, which must lie in the same checkpoints
    directory: a link pointing elsewhere is someone else's file, not our checkpoint."""
    if not directory.is_symlink():
        return directory
    target = directory.resolve()
    if target.parent != directory.parent.resolve():
        raise CheckpointError(f"checkpoint {directory} links to {target}, outside {directory.parent}")
    return target


def _verify_manifest(directory: Path, version: Path, names: Iterable[str] = CONTENT_FILES) -> None:
    """Every file of `names` is listed in the manifest, with the size and SHA-256 it has."""
    try:
        manifest = json.loads((version / MANIFEST_FILE).read_text())
        files = manifest["files"]
        expected = {name: files[name] for name in names}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST_FILE} is missing or corrupt ({error})") from None
    for name, recorded in expected.items():
        if not (version / name).is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {name} is missing")
        actual = _digest(version / name)
        if actual != recorded:
            what = "size" if actual["size"] != recorded.get("size") else "SHA-256"
            raise CheckpointError(
                f"checkpoint {directory}: {name} is corrupt (its {what} does not match {MANIFEST_FILE})"
            )


def load_checkpoint(directory: Path, rows: Callable[[str], slice | None] | None = None) -> Checkpoint:
    """Read a checkpoint directory, with a one-line `CheckpointError` if it is missing, damaged,
    not ours, or holds weights that are not finite. `rows(name)`, when given, picks the rows of
    the tensors to read (None: all of it), so that a learner holding part of a split head reads
    only its rows of the file."""
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory}")
    version = _resolve_within(directory)
    for file_name in (*CONTENT_FILES, MANIFEST_FILE):
        if not (version / file_name).is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {file_name} is missing")
    _verify_manifest(directory, version)
    try:
        state = json.loads((version / STATE_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {directory}: {STATE_FILE} is corrupt ({error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {directory}: {STATE_FILE} is not a distdqn checkpoint of format {FORMAT_VERSION}"
        )
    try:
        tensors = load_file(version / TENSORS_FILE) if rows is None else _load_rows(version / TENSORS_FILE, rows)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {directory}: {TENSORS_FILE} is corrupt ({error})") from None
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(f"checkpoint {directory}: tensors {bad[:3]} hold NaN or inf")
    integral = not_floating(tensors)
    if integral:
        raise CheckpointError(
            f"checkpoint {directory}: tensor {integral[0]} is {tensors[integral[0]].dtype}, not floating point"
        )
    try:
        config = load_config_toml(version / CONFIG_FILE)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {directory}: {error}") from None
    return Checkpoint(config, tensors, state)


def _load_rows(path: Path, rows: Callable[[str], slice | None]) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt") as tensors:
        return {
            name: tensors.get_tensor(name) if (pick := rows(name)) is None else tensors.get_slice(name)[pick]
            for name in tensors.keys()  # noqa: SIM118 (a safetensors file is not a mapping)
        }


def load_resume_state(directory: Path, max_array_bytes: int | None = None) -> dict[str, Any] | None:
    """The roles' states a checkpoint holds for an exact resume (None if it holds none), each
    file checked against the manifest; a referenced file must lie in `resume/`, and an array
    declaring more than `max_array_bytes` (what the run's layout can hold) is refused before it
    is read."""
    version = _resolve_within(directory)
    if not (version / RESUME_FILE).is_file():
        return None
    _verify_manifest(directory, version, [RESUME_FILE])
    try:
        saved = json.loads((version / RESUME_FILE).read_text())
        tree, files = saved["tree"], saved["arrays"]
        if not isinstance(files, dict):
            raise TypeError("arrays is not a mapping")
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {directory}: {RESUME_FILE} is corrupt ({error})") from None
    for file_name in files.values():
        if not (isinstance(file_name, str) and Path(file_name).parent == Path(RESUME_DIR) and "/." not in file_name):
            raise CheckpointError(f"checkpoint {directory}: {RESUME_FILE} names {file_name!r} outside {RESUME_DIR}/")
    _verify_manifest(directory, version, files.values())

    def load(name: str) -> Any:
        if name not in files:
            raise CheckpointError(f"checkpoint {directory}: {RESUME_FILE} refers to an unknown array {name!r}")
        try:
            return read_array(version / files[name], max_array_bytes)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {directory}: {error}") from None

    return join_arrays(tree, load)
