"""SIGTERM (Kubernetes, spot VMs) and Ctrl-C end a run with `latest` written and exit 0; a second
Ctrl-C exits at once, with no traceback and the last checkpoint intact."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distdqn.storage.checkpoint import load_checkpoint

LONG_RUN = [
    "--total-steps",
    "1000000",
    "--set",
    "logging.progress=false",
    "--set",
    "logging.tensorboard=false",
    "--set",
    "logging.every_steps=200",
    "--set",
    "checkpoint.every_steps=1000000",
]


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "distdqn", "train", "--run-dir", str(run_dir), *LONG_RUN, *extra]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _wait_for_training(run_dir: Path, lines: int = 3, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= lines:
            return
        time.sleep(0.1)
    raise AssertionError("the run did not start training")


def _stop(process: subprocess.Popen, run_dir: Path, which: signal.Signals) -> int:
    """Send `which`; the run exits 0 within Kubernetes' default grace period (30 s), says why, and
    its `latest` holds at least every step it logged. Returns the env steps of that `latest`."""
    sent = time.monotonic()
    process.send_signal(which)
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 0, err
    assert f"stopped by {which.name}" in err and "Traceback" not in err
    assert took < 30  # Kubernetes' default grace period
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"]
    logged = [json.loads(line)["env_steps"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert stopped_at >= max(logged) > 0
    return stopped_at


def test_a_stop_signal_writes_latest_and_exits_0_and_resume_continues(tmp_path: Path):
    """Ctrl-C stops the run; the run resumed from the checkpoint that wrote goes on and is stopped
    by SIGTERM in turn, which writes its own `latest`; a resume from that one finishes. (One run
    for both signals: each was a run of its own, through the same handler, stop and save.)"""
    from distdqn.cli import main

    run_dir = tmp_path / "run"
    process = _start(run_dir)
    _wait_for_training(run_dir)  # no checkpoint was due yet: only the signal writes one
    interrupted_at = _stop(process, run_dir, signal.SIGINT)

    resumed = subprocess.Popen(
        [sys.executable, "-m", "distdqn", "train", "--resume", str(run_dir)],  # on to a million steps
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = len((run_dir / "metrics.jsonl").read_text().splitlines())
    _wait_for_training(run_dir, lines=lines + 3)  # it goes on from the checkpoint Ctrl-C wrote
    terminated_at = _stop(resumed, run_dir, signal.SIGTERM)
    assert terminated_at > interrupted_at  # SIGTERM wrote a `latest` of its own

    assert main(["train", "--resume", str(run_dir), "--total-steps", str(terminated_at + 400)]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"] >= terminated_at + 400


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path: Path):
    run_dir = tmp_path / "run"
    process = _start(run_dir, "--set", "checkpoint.every_steps=400")
    _wait_for_training(run_dir, lines=4)
    while not (run_dir / "checkpoints" / "latest").exists():  # written on a thread of its own
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode in (0, 130)  # 0 if the first stop finished before the second came
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    load_checkpoint(run_dir / "checkpoints" / "latest")  # intact


def test_a_run_directory_in_use_is_refused_and_a_dead_owners_lock_is_taken_over_before_its_first_checkpoint(
    tmp_path: Path, capsys
):
    """A second run in a directory in use is refused; once its owner is killed (kill -9, before its
    first checkpoint) `--resume` takes the lock over and starts the run over from its config.toml:
    `--resume` used to say "checkpoint not found" and a fresh `train` "not empty", a dead end. (One
    killed run for both: the lock is taken the same way whether a checkpoint is there or not.)"""
    from distdqn.cli import main

    run_dir = tmp_path / "run"
    process = _start(run_dir)  # no checkpoint is due before a million steps
    _wait_for_training(run_dir)
    assert main(["train", "--resume", str(run_dir), "--total-steps", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"run directory {run_dir} is in use by pid {process.pid}" in err and "\n" not in err
    process.kill()  # no chance to clean up: the lock file stays, but the kernel drops the lock
    process.communicate()
    assert (run_dir / ".lock").exists()
    assert not (run_dir / "checkpoints").exists()
    assert main(["train", "--resume", str(run_dir), "--total-steps", "300"]) == 0
    steps = [json.loads(line)["env_steps"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] >= 300  # one run, started over from its config.toml
    assert load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"] >= 300
