"""Exact resume: a run killed with `kill -9` (or stopped by SIGTERM) at a random moment after its
first checkpoint and resumed ends with the same metrics (apart from timings) and the same weights
as a run that was never stopped, on the inline and the threads runtime alike.

The runs are 3000 env steps (learning from 500, a checkpoint every 500, evaluations at 1000,
2000 and 3000, the stop between 1000 and 2000): long enough that the stop falls among
checkpoints, evaluations and the epsilon and learning-rate schedules with updates made before
and after it, which is all an exact resume has to carry; a longer run repeats the same code.
Two stops cover both runtimes and both ways a run ends early: `kill -9` on threads (resumed from
a periodic checkpoint) and SIGTERM inline (from the checkpoint the stop writes, through the same
save and resume code as a periodic one). SIGTERM and resume from S3 on a real container cluster
is `make cluster-check`'s (scripts/cluster_check.py)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distdqn.cli import main
from distdqn.run.metrics import TIMING_KEYS
from distdqn.storage.checkpoint import RESUME_FILE, load_checkpoint

TOTAL_STEPS = 3_000
RUN = [
    "--env",
    "CartPole-v1",
    "--seed",
    "3",
    "--total-steps",
    str(TOTAL_STEPS),
    "--set",
    "checkpoint.every_steps=500",
    "--set",
    "algorithm.learning_starts=500",
    "--set",
    "logging.every_steps=125",
    "--set",
    "evaluation.every_steps=1000",
    "--set",
    "logging.tensorboard=false",
    "--set",
    "logging.progress=false",
]
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "distdqn", "train", *args]


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()[:-1] if path.exists() else []  # the last may be half written
    return max((json.loads(line)["env_steps"] for line in lines), default=0)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run, in this process: only the stopped runs need processes of their own."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(["train", "--run-dir", str(run_dir), *RUN]) == 0
    return run_dir


def _interrupt(run_dir: Path, runtime: str, how: signal.Signals, seed: int) -> int:
    """Start the run, stop it with `how` once a random number of env steps after its first
    checkpoint is logged; return the env steps of the checkpoint it will resume from."""
    process = subprocess.Popen(
        _train("--run-dir", str(run_dir), *RUN, "--set", f"placement.runtime={runtime}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=QUIET,
    )
    stop_after = random.Random(seed).randrange(1000, TOTAL_STEPS - 1000)
    try:
        deadline = time.monotonic() + 600
        while _logged_steps(run_dir) < stop_after or not (run_dir / "checkpoints" / "latest").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run did not get far enough"
            time.sleep(0.05)
        process.send_signal(how)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == (0 if how == signal.SIGTERM else -signal.SIGKILL), err[-3000:]
    latest = run_dir / "checkpoints" / "latest"
    assert (latest / RESUME_FILE).is_file()  # the replay went into the checkpoint
    steps = load_checkpoint(latest).state["counters"]["env_steps"]
    assert steps < TOTAL_STEPS
    return steps


@pytest.mark.parametrize(
    ("runtime", "how", "seed"),
    [("threads", signal.SIGKILL, 1), ("inline", signal.SIGTERM, 2)],
)
def test_a_stopped_and_resumed_run_equals_one_never_stopped(
    uninterrupted: Path, tmp_path: Path, runtime: str, how: signal.Signals, seed: int
):
    run_dir = tmp_path / "run"
    resumed_from = _interrupt(run_dir, runtime, how, seed)
    assert main(["train", "--resume", str(run_dir)]) == 0

    expected, got = _records(uninterrupted), _records(run_dir)
    assert any(record["env_steps"] > resumed_from for record in got)
    assert got == expected
    weights = load_checkpoint(run_dir / "checkpoints" / "latest").tensors
    reference = load_checkpoint(uninterrupted / "checkpoints" / "latest").tensors
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[name], reference[name]) for name in reference)
