"""Run directories on object storage: `s3://`, `gs://` and any other fsspec URI.

An object store has no rename, no symlink and no flock, and every checkpoint guarantee of
`distdqn.storage.checkpoint` rests on those. So a remote run is never written in place: the run writes
an ordinary local run directory (the *staging* directory, a temporary directory), where atomic
renames, links and the lock work as always, and a `RemoteRun` mirrors it to the store:

    URI/config.toml, URI/metrics.jsonl, URI/placement.json, URI/wandb_id, URI/tb/...   copies of the local files
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

A store fails now and then (a dropped connection, a timeout, a 503 SlowDown). Every call to it
is retried after such a transient error (`is_transient`, `STORE_RETRY`), on top of what the
backend retries itself; an error that waiting does not cure (permissions, credentials, a
missing bucket) is not. When an upload still fails, the run stops and the staging directory,
the only copy of the checkpoints the store lacks, is kept and named in the error, with the
command that uploads it (`upload_run`, `distdqn upload STAGING URI`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from distdqn.errors import CheckpointError, UserError
from distdqn.storage.checkpoint import MANIFEST_FILE, RESUME_DIR, RESUME_FILE, STATE_FILE, TENSORS_FILE
from distdqn.storage.locations import is_remote
from distdqn.storage.retry import STORE_RETRY, GaveUp, Retry, Retrying
from distdqn.storage.run_lock import RunLock

CHECKPOINT_NAMES = ("latest", "best")
VERSIONS = "versions"
WANDB_ID_FILE = "wandb_id"
"""The id of the run's Weights & Biases run (see distdqn.run.wandb_sink), which a resume goes on in."""
RUN_FILES = ("config.toml", "placement.json", WANDB_ID_FILE)
RESUMED_FILES = ("config.toml", "metrics.jsonl", WANDB_ID_FILE)
"""The run's own files a resume downloads (TensorBoard's stay on the store)."""
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


UPLOAD_COMMAND = "distdqn upload"
"""How the error of a failed upload tells the user to upload the staging directory it kept."""


class StorageError(UserError):
    """The store cannot be reached or written (credentials, bucket, network, missing backend)."""


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


def _store(uri: str) -> tuple[Any, str]:
    """`_filesystem(uri)`, its calls retried as `STORE_RETRY` says."""
    fs, path = _filesystem(uri)
    return Retrying(fs, STORE_RETRY), path


@contextmanager
def _store_errors(uri: str, doing: str) -> Iterator[None]:
    """Errors of the store (credentials, network, permissions) as one line naming the URI."""
    try:
        yield
    except UserError:
        raise
    except GaveUp as gave_up:
        raise StorageError(
            f"cannot {doing} {uri}: {_describe(gave_up.error)} "
            f"(gave up after {gave_up.tries} tries in {gave_up.seconds:.0f} s)"
        ) from None
    except Exception as error:  # fsspec backends raise their own exception types
        raise StorageError(f"cannot {doing} {uri}: {_describe(error)}") from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


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
    fs, path = _store(uri)
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
    metrics.jsonl, wandb_id, and the versions `latest` and `best` point to (the replay only if `replay`),
    linked as a local run links them. Returns {checkpoint name: version} of what it fetched.
    TensorBoard files stay on the store: a resumed run writes new event files next to them."""
    fs, path = _store(uri)
    fetched: dict[str, str] = {}
    with _store_errors(uri, "read"):
        for name in RESUMED_FILES:
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
        self._fs, self._path = _store(self.uri)
        self._uploaded = dict(uploaded or {})  # checkpoint name -> version its pointer names
        self._pending: dict[str, str] = {}  # checkpoint name -> version uploaded, pointer not yet moved
        self._files: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) uploaded
        if uploaded is not None:  # a downloaded run: its files are on the store as they are here
            for name in RESUMED_FILES:
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
        checkpoint's, takes it along (the training loop does not wait for a large `latest`).
        It is tried once, on the training loop's thread, which does not wait out a store's
        outage: after a transient error the next checkpoint's upload, retried, takes it along."""
        if not self._lock.acquire(blocking=False):
            return
        retry, self._fs.retry = self._fs.retry, Retry(attempts=1)
        try:
            with _store_errors(self.uri, "write to"):
                try:
                    if self._upload_version("best"):
                        self._move_pointer("best")
                except GaveUp:
                    pass  # a transient error: the next sync takes `best` along
        finally:
            self._fs.retry = retry
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

    def not_uploaded(self) -> list[str]:
        """The checkpoints whose local version the store's pointer does not name (yet)."""
        return [
            name
            for name in CHECKPOINT_NAMES
            if (self.staging / "checkpoints" / name).is_symlink()
            and (self.staging / "checkpoints" / name).resolve().name.removeprefix(".") != self._uploaded.get(name)
        ]

    def kept(self, error: StorageError) -> StorageError:
        """`error`, an upload that failed, with where the checkpoints the store lacks are kept
        (the staging directory, which the caller keeps) and how to upload them."""
        names = self.not_uploaded()
        if "latest" in names:
            steps = _env_steps(self.staging / "checkpoints" / "latest")
            if steps is not None:
                names[0] = f"latest at env step {steps}"
        return StorageError(
            f"{error}; the run's newest checkpoints ({', '.join(names)}) are only in {self.staging}, kept: "
            f"upload them with `{UPLOAD_COMMAND} {self.staging} {self.uri}` once the store is back, "
            f"or go on there with `distdqn train --resume {self.staging}`"
        )

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
        try:
            # the loop replaces `best` (and removes its old version) while this thread uploads
            files = sorted(p for p in version_dir.rglob("*") if p.is_file())
            if not any(file.name == MANIFEST_FILE for file in files):
                return False  # gone (or not yet complete): no pointer may name it
            files.sort(key=lambda p: p.name == MANIFEST_FILE)  # the manifest last
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
    fs, path = _store(uri)
    with _store_errors(uri, "read"):
        fs.invalidate_cache(path)
        if fs.exists(path) and (not fs.isdir(path) or fs.ls(path, detail=False)):
            raise UserError(f"run directory {uri} is not empty; use --resume {uri} or another --run-dir")


@contextmanager
def remote_run(uri: str, resume: bool) -> Iterator[RemoteRun]:
    """A staging directory for the run at `uri`, mirrored there while the run goes on: empty for
    a fresh run (whose `uri` must be unused), the downloaded run for `resume`. On exit the last
    changes are uploaded and the staging directory is removed.

    Unless an upload failed (after `STORE_RETRY`'s tries): then the staging directory is kept
    if it holds checkpoints the store lacks, and the error says where and how to upload them.
    An upload that failed during the run stopped it (the checkpoint thread's error ends the
    loop); the store is not tried once more at exit."""
    if not resume:
        _refuse_used(uri)
    staging = Path(tempfile.mkdtemp(prefix="distdqn-run-"))
    try:
        store = RemoteRun(uri, staging, download_run(uri, staging) if resume else None)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        yield store
    except StorageError as error:
        raise _keep_if_needed(store, error) from None
    except BaseException as stopped:
        _final_upload(store, stopped)
        raise
    else:
        _final_upload(store, None)


def _final_upload(store: RemoteRun, stopped: BaseException | None) -> None:
    """Upload what changed since the last checkpoint, then remove the staging directory. If
    that fails, the run's own error `stopped` (if any) stays in the line or, for a bug, its
    traceback gets the line as a note."""
    try:
        store.sync()
    except StorageError as error:
        failed = _keep_if_needed(store, error)
        if stopped is None:
            raise failed from None
        if isinstance(stopped, UserError):
            raise StorageError(f"{failed} (the run had stopped: {stopped})") from None
        note = f"distdqn: error: {failed}"
        if hasattr(stopped, "add_note"):  # Python 3.11
            stopped.add_note(note)
        else:
            print(note, file=sys.stderr)
        return
    shutil.rmtree(store.staging, ignore_errors=True)


def _keep_if_needed(store: RemoteRun, error: StorageError) -> StorageError:
    """The error to raise for an upload that failed: the staging directory is kept, and named,
    if it holds checkpoints the store lacks; otherwise removed (the store has the run)."""
    if store.not_uploaded():
        return store.kept(error)
    shutil.rmtree(store.staging, ignore_errors=True)
    return error


def _env_steps(checkpoint: Path) -> int | None:
    try:
        steps = json.loads((checkpoint / "state.json").read_text())["counters"]["env_steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) else None


def upload_run(run_dir: Path, uri: str) -> dict[str, str]:
    """Upload the local run directory `run_dir` to `uri`, as a run there keeps it: what a run
    whose store failed left in its staging directory, or a run that went on locally from it.
    Versions the store's pointers name already are not uploaded again; the pointers then move to
    the local `latest` and `best`, and versions the local run no longer keeps are deleted from
    the store. A store whose `latest` is further on than the local one is refused (another run
    went on there). Returns {checkpoint name: version} as the store's pointers now name them."""
    if not is_remote(uri):
        raise UserError(f"{uri} is not a URI (s3://bucket/run, gs://...)")
    if not (run_dir / "config.toml").is_file():
        raise CheckpointError(f"no run at {run_dir}: it holds no config.toml")
    with RunLock(run_dir):
        store = RemoteRun(uri, run_dir)
        fs, path = store._fs, store._path
        with _store_errors(store.uri, "read"):
            fs.invalidate_cache()
            for name in CHECKPOINT_NAMES:
                version = _pointer_version(fs, f"{path}/checkpoints/{name}", store.pointer(name))
                if version is not None:
                    store._uploaded[name] = version
            latest = store._uploaded.get("latest")
            there = None if latest is None else _remote_env_steps(fs, f"{path}/checkpoints/{VERSIONS}/{latest}")
        here = _env_steps(run_dir / "checkpoints" / "latest")
        if there is not None and (here is None or there > here):
            raise CheckpointError(
                f"{store.pointer('latest')} is at env step {there}, further than {run_dir} ({here}): "
                "another run went on there; not replaced"
            )
        store.sync()
    return dict(store._uploaded)


def _remote_env_steps(fs: Any, version_path: str) -> int | None:
    try:
        steps = json.loads(fs.cat_file(f"{version_path}/state.json"))["counters"]["env_steps"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) else None
