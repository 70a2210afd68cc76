"""One live process per run directory: two runs writing one directory duplicate its metrics and
delete each other's checkpoint versions.

The lock is an advisory `flock` on `RUN_DIR/.lock`, which also records the owner's pid and host
for the error message. The kernel drops the lock when its process dies, however it dies (even
`kill -9`), so a lock left by a dead process is simply taken over; only a live owner refuses.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from distdqn.errors import UserError

LOCK_FILE = ".lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._file: int | None = None

    def __enter__(self) -> RunLock:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(descriptor)
            os.close(descriptor)
            raise UserError(
                f"run directory {self.path.parent} is in use by {owner}; wait for it to end or stop it "
                "(SIGTERM writes its checkpoint)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._file = descriptor
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._file is not None:
            os.close(self._file)  # closing releases the flock
            self._file = None


def _owner(descriptor: int) -> str:
    try:
        owner = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"pid {owner['pid']} on {owner['host']}"
    except (ValueError, KeyError, TypeError):
        return "another process"
