"""`distdqn tune` with trials on the ray runtime: every role a Ray actor of its own. One trial
takes the whole 2-CPU cluster, so this module has a cluster of its own (see `embedded_ray`)."""

import json
from pathlib import Path

from tune_runs import run_tune, tune_log


def test_a_trial_on_the_ray_runtime_runs_its_roles_as_ray_actors(embedded_ray, tmp_path: Path) -> None:
    tune_dir = tmp_path / "ray"
    roles = [f"placement.{role}.num_cpus=0.25" for role in ("actor", "shard", "learner", "evaluator")]
    code = run_tune(
        tune_dir,
        *("--scheduler", "random", "--param", "algorithm.lr=loguniform(1e-4,3e-3)", "--trials", "1"),
        *("--total-steps", "2000", "--interval", "1000"),
        overrides=("placement.runtime=ray", *roles),
    )
    assert code == 0
    (trial,) = (tune_dir / "trials").iterdir()
    where = json.loads((trial / "placement.json").read_text())
    assert sorted(where) == ["actor-0", "evaluator", "learner-0", "shard-0"]
    assert len({role["pid"] for role in where.values()}) == 4  # four Ray actors, none in the trial's process
    assert [record["env_steps"] // 1000 for record in tune_log(tune_dir)] == [1, 2]
