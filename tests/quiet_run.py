"""A short `distdqn train` from the CLI, without progress or TensorBoard: the smoke run of a preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distdqn.cli import main


def train_quietly(env_id: str, run_dir: Path, total_steps: int, *overrides: str) -> list[dict[str, Any]]:
    """Train `env_id`'s preset for `total_steps` with `--set overrides`; return metrics.jsonl's records."""
    sets = [
        item
        for override in ("logging.progress=false", "logging.tensorboard=false", *overrides)
        for item in ("--set", override)
    ]
    code = main(["train", "--env", env_id, "--total-steps", str(total_steps), "--run-dir", str(run_dir), *sets])
    assert code == 0
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
