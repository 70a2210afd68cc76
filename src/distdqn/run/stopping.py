"""Stopping on request: SIGTERM (what Kubernetes and spot VMs send) and Ctrl-C end a run cleanly.

The first SIGTERM or SIGINT only raises a flag. The training loop sees it at its next turn, lets
the calls in flight finish (an evaluation in flight is dropped: it could take minutes), writes
`checkpoints/latest` and returns, and the command exits 0. A second SIGINT (an impatient Ctrl-C)
ends the process at once: every checkpoint is written atomically, so the last one stays intact.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

EXIT_INTERRUPTED = 130


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGINT set `requested` to the signal's name."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def install(self) -> None:
        """Take SIGTERM and SIGINT (again: `ray.init` installs a SIGTERM handler of its own)."""
        if threading.current_thread() is not threading.main_thread():  # elsewhere Python allows no handlers
            return
        for number in (signal.SIGTERM, signal.SIGINT):
            previous = signal.signal(number, self._handle)
            self._previous.setdefault(number, previous)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Give the signals back, unless a stop was asked for: the process is then on its way out,
        and a Ctrl-C during its exit must still end it quietly, not in an atexit traceback."""
        if self.requested is None:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested is not None and number == signal.SIGINT:
            print("distdqn: interrupted again: exiting now; the last checkpoint is intact", file=sys.stderr)
            os._exit(EXIT_INTERRUPTED)
        if self.requested is None:
            self.requested = signal.Signals(number).name
