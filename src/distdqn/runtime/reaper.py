"""Ends an embedded Ray cluster's processes when the driver that started them dies, `kill -9` included.

Ray 2.60 ties only part of a cluster started by `ray.init` to its driver: the GCS, raylet,
monitors and dashboard get SIGKILL from the kernel when the driver dies (PR_SET_PDEATHSIG), and
workers see their raylet go within about 3 s. The dashboard agent and the runtime env agent see it
within a second too, but then spend 60 s trying to tell the dead GCS (a timeout fixed in Ray's
`report_raylet_error_logs`, no setting shortens it), one of them still listening on its port.

So the driver starts this file as a process of its own before `ray.init`, with a pipe on stdin
that only the driver holds, in its own session (Ctrl-C on the terminal does not reach it), and
marks the cluster with an environment variable that every process `ray.init` starts inherits, and
the raylet hands on to its workers and agents. When the pipe reads EOF, or the reaper finds itself
orphaned, the driver is gone: the reaper SIGKILLs every process of this user whose environment at
start carries the mark, and scans again until none is left. Nothing else is touched: a cluster the
driver only joined carries no mark. This file imports only the standard library; the driver runs it
as a script. Linux only (it reads /proc); elsewhere `Reaper` does nothing.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARK = "DISTDQN_RAY_CLUSTER"
"""The environment variable whose value names one embedded cluster."""

REAP_DEADLINE_S = 10.0
"""The reaper gives up scanning this long after the driver is gone (it takes well under 1 s)."""


def marked_pids(entry: bytes) -> list[int]:
    """Processes whose environment at start holds `entry` (`NAME=value`); others' are unreadable."""
    needle = b"\0" + entry + b"\0"
    found = []
    for path in Path("/proc").iterdir():
        if path.name.isdigit():
            try:
                environment = (path / "environ").read_bytes()
            except OSError:
                continue
            if needle in b"\0" + environment:
                found.append(int(path.name))
    return found


def reap(entry: bytes) -> None:
    """SIGKILL the marked processes until two scans in a row find none (a raylet killed mid-spawn
    may leave a worker that the first scan missed)."""
    deadline = time.monotonic() + REAP_DEADLINE_S
    quiet_scans = 0
    while True:
        found = [pid for pid in marked_pids(entry) if pid != os.getpid()]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        quiet_scans = 0 if found else quiet_scans + 1
        if quiet_scans == 2 or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def wait_for_driver_exit(driver_pid: int) -> None:
    """Return once stdin reads EOF or this process is no longer the driver's child (a child the
    driver forked without exec could keep the pipe open)."""
    stdin = sys.stdin.fileno()
    while os.getppid() == driver_pid:
        readable, _, _ = select.select([stdin], [], [], 0.5)
        if readable and not os.read(stdin, 4096):
            return


class Reaper:
    """The driver's side: starts the reaper process and marks what `ray.init` starts."""

    def __init__(self) -> None:
        self.entry = f"{MARK}={secrets.token_hex(8)}"
        self._process: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            self._process = subprocess.Popen(
                [sys.executable, "-I", __file__, self.entry, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )

    @contextmanager
    def marking(self) -> Iterator[None]:
        """Processes started inside this block carry the mark; the driver itself does not.

        `SPT_NOENV=1` keeps the mark readable: Ray's agents retitle themselves with setproctitle,
        which otherwise reuses the memory that /proc/PID/environ shows and may blank the mark
        (the raylet already sets it for workers)."""
        if self._process is None:
            yield
            return
        name, value = self.entry.split("=", 1)
        saved = {key: os.environ.get(key) for key in (name, "SPT_NOENV")}
        os.environ.update({name: value, "SPT_NOENV": "1"})
        try:
            yield
        finally:
            for key, previous in saved.items():
                if previous is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = previous

    def close(self, timeout: float = REAP_DEADLINE_S) -> None:
        """Let the reaper kill what is left of the cluster (after `ray.shutdown`, nothing) and exit."""
        if self._process is None:
            return
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def main(argv: list[str]) -> int:
    entry, driver_pid = argv[1].encode(), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # its life ends with the driver's, not before
    wait_for_driver_exit(driver_pid)
    reap(entry)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
