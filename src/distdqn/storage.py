"""Run directories on object storage: `s3://`, `gs://` and any other fsspec URI.

An object store has no rename, no symlink and no flock, and every checkpoint guarantee of
`distdqn.checkpoint` rests on those. So a remote run is never written in place: the run writes
an ordinary local run directory (the *staging* directory, a temporary directory), where atomic
renames, links and the lock work as always, and a `RemoteRun` mirrors it to the store:

    URI/config.toml, URI/metrics.jsonl, URI/placement.json, URI/tb/...   copies of the local files
    URI/checkpoints/versions/<name>-<id>/...   every file of one checkpoint version
    URI/checkpoints/latest, URI/checkpoints/best   pointer objects: {"version": "<name>-<id>"}

Atomicity without rename: a version is uploaded in full under a prefix of its own, and only then
is its pointer object written (one PUT, which object stores apply whole); versions the pointer
no longer names are deleted after it moved. A reader reads the pointer and then the version it
names, so it sees a complete checkpoint whenever it reads, and a run killed mid-upload leaves the
previous pointer, and its version, as they were. A reader checks every file against the
version's manifest (`load_checkpoint` does, once the files are local).

A store has no lock either: one live run per URI is the user's to ensure (the run-directory
lock guards only the staging directory). Credentials and endpoints are whatever fsspec's
backend takes from the environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_PROFILE...).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from distdqn.checkpoint import MANIFEST_FILE, RESUME_DIR, RESUME_FILE, STATE_FILE, TENSORS_FILE
from distdqn.errors import CheckpointError, UserError

CHECKPOINT_NAMES = ("latest", "best")
VERSIONS = "versions"
RUN_FILES = ("config.toml", "placement.json")
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class StorageError(UserError):
    """The store cannot be reached or written (credentials, bucket, network, missing backend)."""


def is_remote(location: str | Path) -> bool:
    """Whether a run location is a URI (`s3://bucket/run`, `gs://...`, `file:///...`) rather
    than a local path. A `Path` never is: `Path("s3://b")` has already lost a slash."""
    return isinstance(location, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def location(text: str) -> Path | str:
    """argparse type for a run directory or checkpoint: a URI stays a string, a path a `Path`."""
    return text if is_remote(text) else Path(text)


def _filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem of `uri` and the path within it, with a one-line error when the
    backend is not installed (`s3fs` for s3://, `gcsfs` for gs://: `pip install distdqn[cloud]`)."""
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri.rstrip("/"))
    except ImportError as error:
        raise StorageError(f"{uri}: {error} (pip install 'distdqn[cloud]')") from None
    except ValueError as error:
        raise StorageError(f"{uri}: {error}") from None
    if hasattr(fs, "auto_mkdir"):
        fs.auto_mkdir = True  # a local or mounted file system needs the parent directories
    return fs, path


@contextmanager
def _store_errors(uri: str, doing: str) -> Iterator[None]:
    """Errors of the store (credentials, network, permissions) as one line naming the URI."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:  # fsspec backends raise their own exception types
        raise StorageError(f"cannot {doing} {uri}: {type(error).__name__}: {error}") from None


def _pointer_version(fs: Any, pointer: str, uri: str) -> str | None:
    """The version a pointer object names, or None if there is no pointer; a pointer that names
    anything but a version of this run's `checkpoints/versions/` is refused."""
    try:
        raw = fs.cat_file(pointer)
    except FileNotFoundError:
        return None
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {uri}: the pointer object is corrupt ({error})") from None
    if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version):
        raise CheckpointError(
            f"checkpoint {uri} points to {str(version)[:80]!r}, outside {uri.rsplit('/', 1)[0]}/{VERSIONS}/"
        )
    return version


def _manifest_files(manifest: bytes, uri: str) -> list[str]:
    """The relative file names a version's manifest lists, each inside the version."""
    try:
        files = list(json.loads(manifest)["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {uri}: {MANIFEST_FILE} is corrupt ({error})") from None
    for name in files:
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if not parts or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise CheckpointError(f"checkpoint {uri}: {MANIFEST_FILE} names {str(name)[:80]!r} outside the version")
    return files


def _download_version(fs: Any, version_path: str, into: Path, uri: str, replay: bool) -> None:
    """Copy one checkpoint version (its manifest's files; the replay only if `replay`) to `into`."""
    try:
        manifest = fs.cat_file(f"{version_path}/{MANIFEST_FILE}")
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {uri} names version {version_path.rsplit('/', 1)[-1]}, which is missing"
        ) from None
    into.mkdir(parents=True)
    (into / MANIFEST_FILE).write_bytes(manifest)
    for name in _manifest_files(manifest, uri):
        if not replay and (name == RESUME_FILE or name.startswith(f"{RESUME_DIR}/")):
            continue
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get_file(f"{version_path}/{name}", str(into / name))
        except FileNotFoundError:
            pass  # load_checkpoint names the missing file


def fetch_checkpoint(uri: str, into: Path, replay: bool = False, missing_ok: bool = False) -> Path | None:
    """Download the checkpoint at `uri` (a pointer such as `URI/checkpoints/latest`, or a version
    prefix `URI/checkpoints/versions/<name>-<id>`) into `into`, laid out as a local checkpoints
    directory; return the local path to load (a link to the version, as a local run has it).
    None if there is no checkpoint there and `missing_ok`."""
    fs, path = _filesystem(uri)
    with _store_errors(uri, "read"):
        fs.invalidate_cache()  # a long-lived process (a learner) must see the store as it is now
        checkpoints = into / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        name = path.rsplit("/", 1)[-1]
        if not _VERSION_NAME.fullmatch(name):
            name = "checkpoint"  # only the local link's name
        version = _pointer_version(fs, path, uri) if not fs.isdir(path) else None
        if version is not None:
            version_path = f"{path.rsplit('/', 1)[0]}/{VERSIONS}/{version}"
        elif fs.exists(f"{path}/{MANIFEST_FILE}"):
            version_path, version = path, f"{name}-version"
        elif missing_ok:
            return None
        else:
            raise CheckpointError(f"checkpoint not found: {uri}")
        _download_version(fs, version_path, checkpoints / f".{version}", uri, replay)
        link = checkpoints / name
        link.symlink_to(f".{version}", target_is_directory=True)
        return link


@contextmanager
def local_checkpoint(location: Path | str) -> Iterator[Path]:
    """A local path to the checkpoint at `location`: itself, or a temporary download of a URI."""
    if not is_remote(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="distdqn-checkpoint-") as temporary:
        link = fetch_checkpoint(str(location), Path(temporary))
        assert link is not None
        yield link


CHECKPOINT_MARKS = (MANIFEST_FILE, TENSORS_FILE, STATE_FILE)
"""Files only a checkpoint holds (a run directory holds config.toml too, a checkpoint also)."""


def _is_run(location: Path | str) -> bool:
    """Whether `location` is a run directory (config.toml or checkpoints/, and nothing only a
    checkpoint holds) rather than a checkpoint, damaged or not, or nothing."""
    if not is_remote(location):
        local = Path(location)
        return (
            local.is_dir()
            and not any((local / name).exists() for name in CHECKPOINT_MARKS)
            and any((local / name).exists() for name in ("config.toml", "checkpoints"))
        )
    fs, path = _filesystem(str(location))
    names = ("config.toml", *(f"checkpoints/{checkpoint}" for checkpoint in CHECKPOINT_NAMES))
    with _store_errors(str(location), "read"):
        fs.invalidate_cache()
        return not any(fs.exists(f"{path}/{name}") for name in CHECKPOINT_MARKS) and any(
            fs.exists(f"{path}/{name}") for name in names
        )


def run_checkpoint(location: Path | str, name: str) -> Path | str | None:
    """When `location` (a path or URI) is a run directory, the location of its checkpoint `name`
    (`best` or `latest`), which must exist (else a one-line `CheckpointError`); None when
    `location` is no run directory (a checkpoint itself, say)."""
    if not _is_run(location):
        return None
    if is_remote(location):
        chosen: Path | str = f"{str(location).rstrip('/')}/checkpoints/{name}"
        fs, path = _filesystem(str(chosen))
        with _store_errors(str(chosen), "read"):
            present = fs.exists(path)
    else:
        chosen = Path(location) / "checkpoints" / name
        present = chosen.exists()
    if not present:
        why = (
            "it has had no evaluation yet, or checkpoint.keep_best is off; --latest reads checkpoints/latest"
            if name == "best"
            else "it stopped before its first checkpoint"
        )
        raise CheckpointError(f"run {location} has no checkpoints/{name} ({why})")
    return chosen


def download_run(uri: str, staging: Path, replay: bool = True) -> dict[str, str]:
    """Lay out the remote run `uri` as a local run directory in `staging`: config.toml,
    metrics.jsonl, and the versions `latest` and `best` point to (the replay only if `replay`),
    linked as a local run links them. Returns {checkpoint name: version} of what it fetched.
    TensorBoard files stay on the store: a resumed run writes new event files next to them."""
    fs, path = _filesystem(uri)
    fetched: dict[str, str] = {}
    with _store_errors(uri, "read"):
        for name in ("config.toml", "metrics.jsonl"):
            try:
                fs.get_file(f"{path}/{name}", str(staging / name))
            except FileNotFoundError:
                pass
        for name in CHECKPOINT_NAMES:
            pointer = f"{uri.rstrip('/')}/checkpoints/{name}"
            link = fetch_checkpoint(pointer, staging, replay=replay and name == "latest", missing_ok=True)
            if link is not None:
                fetched[name] = link.resolve().name[1:]
    if not fetched and not (staging / "config.toml").exists():
        raise CheckpointError(f"no run at {uri}: it holds neither config.toml nor checkpoints/latest")
    return fetched


SUMMARY_FILES = ("metrics.jsonl", "config.toml", "tune.jsonl")
"""What `plot` and `compare` read of a run or tune directory (and of each trial of a tune directory)."""


def download_run_files(uri: str, into: Path) -> None:
    """Copy what `plot` and `compare` read of the run or tune directory at `uri` into `into`:
    metrics.jsonl, config.toml, tune.jsonl, and for a tune directory each trial's under
    `trials/<id>/`; checkpoints and TensorBoard files stay on the store. Files the store does
    not have are left out (the reader names what is missing)."""
    fs, path = _filesystem(uri)
    with _store_errors(uri, "read"):
        fs.invalidate_cache()
        _get_present(fs, path, into)
        if not (into / "tune.jsonl").is_file():
            return
        try:
            trials = fs.ls(f"{path}/trials", detail=False)
        except FileNotFoundError:
            return
        for trial in trials:
            name = trial.rstrip("/").rsplit("/", 1)[-1]
            if _VERSION_NAME.fullmatch(name):  # Tune's trial ids; nothing that could leave `into`
                _get_present(fs, f"{path}/trials/{name}", into / "trials" / name)


def _get_present(fs: Any, path: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for name in SUMMARY_FILES:
        try:
            fs.get_file(f"{path}/{name}", str(into / name))
        except FileNotFoundError:
            (into / name).unlink(missing_ok=True)  # a backend may leave an empty file behind


class RemoteRun:
    """Mirrors the local staging directory of a run to its URI. `sync()` brings the store up to
    date: each checkpoint whose link moved is uploaded, then config.toml, placement.json, the
    complete lines of metrics.jsonl and the TensorBoard files that changed, then the pointers
    move, then the versions the run no longer keeps are deleted."""

    def __init__(self, uri: str, staging: Path, uploaded: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.staging = staging
        self._fs, self._path = _filesystem(self.uri)
        self._uploaded = dict(uploaded or {})  # checkpoint name -> version its pointer names
        self._pending: dict[str, str] = {}  # checkpoint name -> version uploaded, pointer not yet moved
        self._files: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) uploaded
        if uploaded is not None:  # a downloaded run: its files are on the store as they are here
            for name in ("config.toml", "metrics.jsonl"):
                if (staging / name).is_file():
                    stat = (staging / name).stat()
                    self._files[name] = (stat.st_size, stat.st_mtime_ns)
        self._lock = threading.Lock()

    def pointer(self, name: str) -> str:
        """The URI of a checkpoint's pointer object, e.g. `URI/checkpoints/latest`."""
        return f"{self.uri}/checkpoints/{name}"

    def checkpoint_saved(self, link: Path) -> None:
        """`CheckpointWriter`'s hook: upload right after a checkpoint is written (on its thread)."""
        self.sync()

    def upload_best(self) -> None:
        """Upload a new `best` now, unless an upload is under way: that one, or the next
        checkpoint's, takes it along (the training loop does not wait for a large `latest`)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            with _store_errors(self.uri, "write to"):
                if self._upload_version("best"):
                    self._move_pointer("best")
        finally:
            self._lock.release()

    def sync(self) -> None:
        """Upload what changed: new checkpoint versions, then the run's files, then the pointers.
        The files go before the pointers, so that a run killed just after a pointer moved has
        its metrics up to that checkpoint on the store (a resume from an older pointer cuts
        metrics.jsonl back, as after a local crash)."""
        with self._lock, _store_errors(self.uri, "write to"):
            moved = [name for name in CHECKPOINT_NAMES if self._upload_version(name)]
            self._sync_files()
            for name in moved:
                self._move_pointer(name)

    def _upload_version(self, name: str) -> bool:
        """Upload every file of the version `name` links to, unless its pointer names it already;
        whether there is a new version to point to."""
        link = self.staging / "checkpoints" / name
        if not link.is_symlink():
            return False
        version_dir = link.resolve()
        version = version_dir.name.removeprefix(".")
        if self._uploaded.get(name) == version:
            return False
        remote = f"{self._path}/checkpoints/{VERSIONS}/{version}"
        files = sorted(p for p in version_dir.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == MANIFEST_FILE)  # the manifest last
        try:
            for file in files:
                self._fs.put_file(str(file), f"{remote}/{file.relative_to(version_dir).as_posix()}")
        except FileNotFoundError:
            return False  # a newer version replaced this one meanwhile; the next sync uploads that
        self._pending[name] = version
        return True

    def _move_pointer(self, name: str) -> None:
        """Point `name` at its uploaded version (one PUT), then delete the versions it replaced."""
        version = self._pending.pop(name)
        self._fs.pipe_file(f"{self._path}/checkpoints/{name}", json.dumps({"version": version}).encode())
        self._uploaded[name] = version
        self._remove_old_versions(name, version)

    def _remove_old_versions(self, name: str, current: str) -> None:
        """Delete `name`'s versions on the store that the local run no longer keeps (the local
        run keeps `checkpoint.keep`), and what an interrupted upload left."""
        kept = {current} | {
            p.name.removeprefix(".")
            for p in (self.staging / "checkpoints").glob(f".{name}-*")
            if p.is_dir() and not p.is_symlink()
        }
        versions = f"{self._path}/checkpoints/{VERSIONS}"
        self._fs.invalidate_cache(versions)
        try:
            present = self._fs.ls(versions, detail=False)
        except FileNotFoundError:
            return
        for path in present:
            version = path.rstrip("/").rsplit("/", 1)[-1]
            if version.startswith(f"{name}-") and version not in kept:
                self._fs.rm(path, recursive=True)

    def _sync_files(self) -> None:
        candidates = [self.staging / name for name in RUN_FILES]
        tensorboard = self.staging / "tb"
        if tensorboard.is_dir():
            candidates += sorted(p for p in tensorboard.rglob("*") if p.is_file())
        for file in candidates:
            self._upload_if_changed(file, file.read_bytes)
        metrics = self.staging / "metrics.jsonl"
        # complete lines only: a line being appended now is uploaded next time
        self._upload_if_changed(metrics, lambda: _complete_lines(metrics.read_bytes()))

    def _upload_if_changed(self, file: Path, content: Any) -> None:
        try:
            stat = file.stat()
        except FileNotFoundError:
            return
        relative = file.relative_to(self.staging).as_posix()
        if self._files.get(relative) == (stat.st_size, stat.st_mtime_ns):
            return
        self._fs.pipe_file(f"{self._path}/{relative}", content())
        self._files[relative] = (stat.st_size, stat.st_mtime_ns)


def _complete_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]


def _refuse_used(uri: str) -> None:
    """A fresh run needs an empty location, as a local `--run-dir` does."""
    fs, path = _filesystem(uri)
    with _store_errors(uri, "read"):
        fs.invalidate_cache(path)
        if fs.exists(path) and (not fs.isdir(path) or fs.ls(path, detail=False)):
            raise UserError(f"run directory {uri} is not empty; use --resume {uri} or another --run-dir")


@contextmanager
def remote_run(uri: str, resume: bool) -> Iterator[RemoteRun]:
    """A staging directory for the run at `uri`, mirrored there while the run goes on: empty for
    a fresh run (whose `uri` must be unused), the downloaded run for `resume`. On exit the last
    changes are uploaded and the staging directory is removed."""
    if not resume:
        _refuse_used(uri)
    staging = Path(tempfile.mkdtemp(prefix="distdqn-run-"))
    try:
        store = RemoteRun(uri, staging, download_run(uri, staging) if resume else None)
        try:
            yield store
        finally:
            store.sync()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
