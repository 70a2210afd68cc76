"""One live process per run directory: two runs writing one directory duplicate its metrics and
delete each other's checkpoint versions.

The lock is an advisory `flock` on `RUN_DIR/.lock`, which also records the owner's pid and host
for the error message while the lock is held (it is emptied on release, so that a process refused
after taking the lock leaves the directory as it found it). The kernel drops the lock when its
process dies, however it dies (even `kill -9`), so a lock left by a dead process is simply taken
over; only a live owner refuses.

The lock file is opened without following a symbolic link (refused in one line). A `.lock` that
is a hard link, another name of a file elsewhere, is locked as it is found (flock writes
nothing) and then replaced by a new file of our own, locked before it takes the name, so that
the owner's pid and host are never written into the other file and no moment is left unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from pathlib import Path
from types import TracebackType

from distdqn.errors import CheckpointError, UserError
from distdqn.storage.run_files import TEMPORARY_SUFFIX, refuse_link

LOCK_FILE = ".lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._file: int | None = None

    def __enter__(self) -> RunLock:
        descriptor = _open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(descriptor)
            os.close(descriptor)
            raise UserError(
                f"run directory {self.path.parent} is in use by {owner}; wait for it to end or stop it "
                "(SIGTERM writes its checkpoint)"
            ) from None
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            raise CheckpointError(f"{self.path} is not a regular file")
        if status.st_nlink > 1:
            descriptor = self._own_lock_file(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._file = descriptor
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._file is not None:
            os.ftruncate(self._file, 0)  # the owner line holds only while the lock does
            os.close(self._file)  # closing releases the flock
            self._file = None

    def _own_lock_file(self, shared: int) -> int:
        """Replace the locked, hard-linked `shared` with a new lock file, locked first."""
        temporary = self.path.with_name(self.path.name + TEMPORARY_SUFFIX)
        if refuse_link(temporary) is not None:
            temporary.unlink()
        descriptor = _open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(temporary, self.path)
        except BaseException:
            os.close(descriptor)
            temporary.unlink(missing_ok=True)
            raise
        finally:
            os.close(shared)
        return descriptor


def _open(path: Path, flags: int) -> int:
    """Open `path` without following a link; a run directory that cannot be opened is one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            refuse_link(path)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"cannot lock run directory {path.parent}: {error.strerror or error}") from None


def _owner(descriptor: int) -> str:
    try:
        owner = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"pid {owner['pid']} on {owner['host']}"
    except (ValueError, KeyError, TypeError):
        return "another process"
