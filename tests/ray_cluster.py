"""A real two-node Ray cluster on loopback for tests, stopped without touching anyone else's.

Both nodes run `ray start --block` in their own process group with their own temp dir; stopping
sends SIGTERM to those groups, then SIGKILL, then kills any stray process whose command line
names the temp dir. `ray stop` is never used: it would stop every Ray node on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def ray_environment() -> dict[str, str]:
    """The environment of every Ray process a test starts, and of the test's own driver: one
    token for all of them, handed over in the environment (a fresh machine has no token file)."""
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TwoNodeCluster:
    def __init__(self, head_resources: dict[str, float], node_resources: dict[str, float], cpus: int = 2) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = Path(tempfile.mkdtemp(prefix="distdqn-ray-"))
        common = ["--block", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1"]
        self._processes = [
            self._start(
                [
                    "--head",
                    f"--port={self.port}",
                    "--include-dashboard=false",
                    f"--temp-dir={self.temp_dir}",
                    f"--resources={json.dumps(head_resources)}",
                    *common,
                ]
            )
        ]
        self._wait_for(lambda status: "Active:" in status)
        self._processes.append(
            self._start([f"--address={self.address}", f"--resources={json.dumps(node_resources)}", *common])
        )
        node_key = next(iter(node_resources))
        self._wait_for(lambda status: node_key in status)

    def _start(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [RAY, "start", *args],
            env=ray_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_for(self, ready, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = subprocess.run(
                [RAY, "status", f"--address={self.address}"], env=ray_environment(), capture_output=True, text=True
            )
            if status.returncode == 0 and ready(status.stdout):
                return
            time.sleep(1.0)
        self.stop()
        raise RuntimeError("the test Ray cluster did not come up")

    def stop(self) -> None:
        for process in self._processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self._processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self._processes:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        _kill_by_command_line(str(self.temp_dir))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _kill_by_command_line(marker: str) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if marker in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
