"""A seeded run gives the metrics (timings aside) and final weights recorded from `main` before
the loop was reorganized (issue 19), inline and on threads: a redesign changes no behaviour."""

import hashlib
import json
from pathlib import Path

import pytest

from distdqn.config import resolve_config
from distdqn.run.metrics import TIMING_KEYS
from distdqn.run.train import train
from distdqn.storage.checkpoint import load_checkpoint

RUN = [
    "total_steps=2000",
    "algorithm.learning_starts=200",
    "evaluation.every_steps=1000",
    "evaluation.episodes=2",
    "logging.every_steps=250",
    "logging.progress=false",
    "logging.tensorboard=false",
    "checkpoint.every_steps=1000",
    "replay.alpha=0.6",
    "seed=7",
]
RECORDED_METRICS = "be8c6aa8a510333afbfca1091775b2f44eb24222c770a18454c8090f71978752"
RECORDED_WEIGHTS = "84bbf0b4e8c8d3ddcd54bc30310fff184dcad8c6a55855dabb92683dfebe6b09"
"""sha256 of the metrics records (sorted keys) and of the latest checkpoint's tensors (by name),
recorded at 617d690 and again before the redesign."""


@pytest.mark.parametrize("runtime", ["inline", "threads"])
def test_a_seeded_run_gives_the_recorded_metrics_and_weights(tmp_path: Path, runtime: str):
    run_dir = tmp_path / "run"
    train(resolve_config("CartPole-v1", overrides=[*RUN, f"placement.runtime={runtime}"]), run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]
    assert hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest() == RECORDED_METRICS
    tensors = load_checkpoint(run_dir / "checkpoints" / "latest").tensors
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].numpy().tobytes())
    assert digest.hexdigest() == RECORDED_WEIGHTS
