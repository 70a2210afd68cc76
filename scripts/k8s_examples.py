"""Regenerate the KubeRay examples in `deploy/` with `distdqn k8s`.

Run `python scripts/k8s_examples.py` after changing `distdqn.tools.k8s*` or a preset; `tests/test_k8s.py`
fails while a file in `deploy/` differs from what the command prints now.
"""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

from distdqn.cli import main as distdqn

DEPLOY = Path(__file__).parents[1] / "deploy"
IMAGE = "ghcr.io/OWNER/distdqn:0.1.0"
"""A placeholder: push the image of `Dockerfile` to your registry and put its name here."""

EXAMPLES: dict[str, list[str]] = {
    # (a) CPU only: 4 actors, 1 learner, 1 shard
    "cpu-4-actors.yaml": [
        "--env", "CartPole-v1",
        "--set", "placement.num_actors=4",
        "--set", "placement.actor_steps_per_call=16",
    ],
    # (b) one GPU learner, 32 actors, 4 replay shards
    "gpu-learner-32-actors.yaml": [
        "--env", "ALE/Pong-v5",
        "--name", "distdqn-pong-32",
        "--set", "placement.device=cuda",
        "--set", "placement.learner.num_gpus=1",
        "--set", "placement.learner.num_cpus=4",
        "--set", "placement.num_actors=32",
        "--set", "placement.num_shards=4",
        "--storage", "s3://BUCKET/distdqn/pong-32",
        "--toleration", "learners", "nvidia.com/gpu:NoSchedule",
    ],
    # (c) two GPU learners, 64 actors over two node groups (the second on spot nodes)
    "two-learners-64-actors.yaml": [
        "--env", "ALE/Pong-v5",
        "--name", "distdqn-pong-64",
        "--set", "placement.device=cuda",
        "--set", "placement.num_learners=2",
        "--set", "placement.learner.num_gpus=1",
        "--set", "placement.learner.num_cpus=4",
        "--set", "placement.num_actors=64",
        "--set", "placement.num_shards=8",
        "--storage", "s3://BUCKET/distdqn/pong-64",
        "--actor-groups", "2",
        "--toleration", "learners", "nvidia.com/gpu:NoSchedule",
        "--node-selector", "actors-1", "cloud.google.com/gke-spot=true",
        "--toleration", "actors-1", "cloud.google.com/gke-spot=true:NoSchedule",
    ],
}  # fmt: skip


def command(name: str) -> list[str]:
    """The `distdqn` arguments that make `deploy/NAME`."""
    return ["k8s", *EXAMPLES[name], "--image", IMAGE, "--token", "external"]


def generate(name: str) -> str:
    """What `deploy/NAME` holds: a line naming its command, then the command's output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = distdqn(command(name))
    if status != 0:
        raise SystemExit(f"distdqn {shlex.join(command(name))} exited with {status}")
    made_by = f"# Made by `python scripts/k8s_examples.py`: distdqn {shlex.join(command(name))}\n"
    return made_by + out.getvalue()


def main() -> None:
    DEPLOY.mkdir(exist_ok=True)
    for name in EXAMPLES:
        (DEPLOY / name).write_text(generate(name))
        print(f"wrote deploy/{name}")


if __name__ == "__main__":
    main()
