"""Real `distdqn tune` runs for tests, on the module's embedded 2-CPU Ray cluster (`embedded_ray` in conftest)."""

from __future__ import annotations

import json
from pathlib import Path

from distdqn.cli import main

QUIET_RUN = ["logging.tensorboard=false", "logging.progress=false"]


def run_tune(tune_dir: Path, *args: str, overrides: tuple[str, ...] = ()) -> int:
    """`distdqn tune` on CartPole, on a 2-CPU embedded cluster, quietly."""
    sets = [item for override in [*overrides, *QUIET_RUN] for item in ("--set", override)]
    return main(["tune", "--env", "CartPole-v1", "--cpus", "2", "--run-dir", str(tune_dir), "--quiet", *args, *sets])


def tune_log(tune_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (tune_dir / "tune.jsonl").read_text().splitlines()]
