"""A seeded run gives the metrics (timings aside) and final weights recorded from `main` before
the loop was reorganized (issue 19), inline and on threads: a redesign changes no behaviour.

Floating point results depend on the CPU: torch picks its vectorized kernels by the instruction
set, and MKL its matrix products by the vendor (an Intel Xeon and an AMD EPYC gave different
digests). So the run happens in a child process whose math is pinned to code paths every x86-64
CPU runs alike. To record new digests after a deliberate change of behaviour:
`python tests/test_recorded_run.py inline`."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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
PORTABLE_MATH = {
    "ATEN_CPU_CAPABILITY": "default",  # torch's own kernels without AVX
    "MKL_CBWR": "COMPATIBLE",  # MKL's results alike on Intel and AMD
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
}
RECORDED = {
    "metrics": "b4d58a02940ec4c072bd2bf3705bcbc042151f83b01ba4625f4ad2ab8eb069c9",
    "weights": "bc58fd74fc884d6549d225c871c93dc0c2cfefec768a5ca191bfc7f2c5048659",
}
"""sha256 of the metrics records (sorted keys) and of the latest checkpoint's tensors (by name),
under PORTABLE_MATH; the run is the one recorded at 617d690 and kept through the redesign."""


def run_digests(runtime: str) -> dict[str, str]:
    """The digests of RUN on CartPole with `runtime`, computed in this process."""
    from distdqn.config import resolve_config
    from distdqn.run.metrics import TIMING_KEYS
    from distdqn.run.train import train
    from distdqn.storage.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        train(resolve_config("CartPole-v1", overrides=[*RUN, f"placement.runtime={runtime}"]), run_dir)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        records = [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]
        tensors = load_checkpoint(run_dir / "checkpoints" / "latest").tensors
    weights = hashlib.sha256()
    for name in sorted(tensors):
        weights.update(name.encode())
        weights.update(tensors[name].numpy().tobytes())
    metrics = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    return {"metrics": metrics, "weights": weights.hexdigest()}


@pytest.mark.parametrize("runtime", ["inline", "threads"])
def test_a_seeded_run_gives_the_recorded_metrics_and_weights(runtime: str):
    child = subprocess.run(
        [sys.executable, __file__, runtime],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads(child.stdout.splitlines()[-1]) == RECORDED


if __name__ == "__main__":
    os.environ.update(PORTABLE_MATH)  # before torch is first imported (run_digests imports it)
    print(json.dumps(run_digests(sys.argv[1])))
