"""The training loop: run files, determinism, replay ratio, resume."""

import json
from pathlib import Path

import pytest
import torch

from distdqn.config import override_config, resolve_config
from distdqn.errors import UserError
from distdqn.roles import ReplayShard
from distdqn.run import roles as roles_module
from distdqn.run.counters import Counters
from distdqn.run.loop import TrainingRun
from distdqn.run.metrics import TIMING_KEYS
from distdqn.run.run_dir import prepare_run_dir
from distdqn.run.train import resume, train
from distdqn.runtime import InlineRuntime, ThreadedRuntime
from distdqn.schedules import learning_rate
from distdqn.storage.checkpoint import load_checkpoint
from distdqn.types import Weights

FAST = [
    "total_steps=2400",
    "algorithm.learning_starts=200",
    "evaluation.every_steps=800",
    "evaluation.episodes=3",
    "logging.every_steps=400",
    "logging.progress=false",
    "checkpoint.every_steps=1200",
    "replay.alpha=0.6",
    "algorithm.replay_ratio=0.25",
]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_run_files_follow_the_contract(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=FAST)
    result = train(config, tmp_path / "run")
    run_dir = result.run_dir
    assert (run_dir / "config.toml").is_file()
    assert list((run_dir / "tb").iterdir())
    for name in ("latest", "best"):
        assert (run_dir / "checkpoints" / name / "tensors.safetensors").is_file()
    records = _metrics(run_dir)
    assert all({"env_steps", "updates", "wall_s"} <= r.keys() for r in records)
    evals = [r for r in records if "eval_return_mean" in r]
    # evaluations run at the first collect past each multiple (autoreset steps are not agent steps)
    assert [r["env_steps"] // 800 for r in evals] == [1, 2, 3]
    assert all(r["env_steps"] % 800 < 4 for r in evals)
    assert all({"eval_return_std", "eval_episodes"} <= r.keys() and r["eval_episodes"] == 3 for r in evals)
    training = [r for r in records if "loss" in r]
    assert training and all("env_steps_per_s" in r and "updates_per_s" in r for r in training)
    # exact replay ratio: 0.25 updates per env step after the first 200 sampleable transitions
    assert result.counters.updates == pytest.approx(0.25 * (2400 - 212), abs=2)
    best = load_checkpoint(run_dir / "checkpoints" / "best")
    assert best.state["counters"]["best_eval_return"] == max(r["eval_return_mean"] for r in evals)


def test_same_seed_same_metrics(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=FAST + ["logging.tensorboard=false"])
    first = _metrics(train(config, tmp_path / "a").run_dir)
    second = _metrics(train(config, tmp_path / "b").run_dir)
    assert _without_timings(first) == _without_timings(second)
    other = _metrics(train(override_config(config, ["seed=1"], "test"), tmp_path / "c").run_dir)
    assert _without_timings(other) != _without_timings(first)


def test_threads_runtime_reproduces_inline_exactly(tmp_path: Path):
    """Roles on their own threads overlap in time but see inline's calls in inline's order."""
    overrides = FAST + [
        "logging.tensorboard=false",
        "env.num_envs=2",
        "placement.actor_steps_per_call=4",
        "placement.num_actors=2",
        "placement.num_shards=2",
        "algorithm.lr_end=1e-4",
        "algorithm.lr_decay_steps=2000",
    ]
    inline = train(resolve_config("CartPole-v1", overrides=overrides), tmp_path / "inline")
    threads = train(
        resolve_config("CartPole-v1", overrides=overrides + ["placement.runtime=threads"]), tmp_path / "threads"
    )
    assert threads.counters.updates == inline.counters.updates > 0
    assert _without_timings(_metrics(threads.run_dir)) == _without_timings(_metrics(inline.run_dir))
    weights = [load_checkpoint(run.run_dir / "checkpoints" / "latest").tensors for run in (inline, threads)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_existing_run_dir_is_not_overwritten(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("precious\n")
    with pytest.raises(UserError, match="not empty"):
        train(resolve_config("CartPole-v1", overrides=FAST), run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == "precious\n"


@pytest.mark.parametrize("run_dir", ["", " "])
def test_an_empty_run_dir_is_refused_not_taken_for_the_current_directory(tmp_path: Path, monkeypatch, run_dir: str):
    """`--run-dir ''` trained into the current directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--run-dir is empty"):
        train(resolve_config("CartPole-v1", overrides=FAST), run_dir)
    assert not list(tmp_path.iterdir())


def test_resume_continues_counters_weights_and_optimizer(tmp_path: Path):
    config = resolve_config(
        "CartPole-v1",
        overrides=FAST + ["logging.tensorboard=false", "algorithm.lr_end=1e-4", "algorithm.lr_decay_steps=3600"],
    )
    run_dir = train(config, tmp_path / "run").run_dir
    before = load_checkpoint(run_dir / "checkpoints" / "latest")
    longer = override_config(before.config, ["total_steps=3600"], "test")
    result = resume(run_dir, longer)
    after = load_checkpoint(run_dir / "checkpoints" / "latest")
    assert 3600 <= result.counters.env_steps < 3604  # the collect that crosses total_steps completes
    assert before.state["counters"]["updates"] < result.counters.updates
    records = _metrics(run_dir)
    steps = [r["env_steps"] for r in records if "eval_return_mean" in r]
    # the resumed run appends, evaluating at each multiple of 800 and at the end; nothing restarts at 0
    assert [s // 800 for s in steps] == [1, 2, 3, 4, 4] and steps == sorted(steps) and steps[-1] >= 3600
    # the resumed learner started from the saved weights and Adam moments, then moved on
    assert after.state["learner"]["updates"] == result.counters.updates
    assert not torch.equal(before.tensors["optimizer.0.exp_avg"], after.tensors["optimizer.0.exp_avg"])
    assert float(after.tensors["optimizer.0.step"]) == result.counters.updates
    # the learning-rate schedule goes on from the env-step count, not from the start: each logged
    # lr is that of an update issued since the previous log line
    algorithm = config.algorithm
    logged = [(r["env_steps"], r["lr"]) for r in records if "lr" in r]
    assert len(logged) >= 6 and logged[-1][1] < logged[0][1]
    for (previous, _), (steps, lr) in zip(logged[:-1], logged[1:], strict=True):
        schedule = [learning_rate(algorithm.lr, algorithm.lr_end, 3600, s) for s in (steps, previous)]
        assert schedule[0] <= lr <= schedule[1]


def test_stop_return_ends_the_run_early(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=FAST + ["stop_return=1", "logging.tensorboard=false"])
    counters = train(config, tmp_path / "run").counters
    assert 800 <= counters.solved_at_env_steps < 804
    assert counters.env_steps < 1600


def test_resume_after_a_crash_drops_metrics_logged_after_the_checkpoint(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=FAST + ["logging.tensorboard=false"])
    run_dir = train(config, tmp_path / "run").run_dir
    with (run_dir / "metrics.jsonl").open("a") as metrics:  # what a crash after the checkpoint leaves
        metrics.write(json.dumps({"env_steps": 2790, "updates": -1, "wall_s": 1.0}) + "\n")
    resume(run_dir, override_config(config, ["total_steps=3200"], "test"))
    records = _metrics(run_dir)
    steps = [r["env_steps"] for r in records]
    assert all(r["updates"] >= 0 for r in records) and steps == sorted(steps) and 3200 <= steps[-1] < 3204


def test_threads_runtime_surfaces_a_role_error_where_its_result_is_read():
    class Failing:
        def __init__(self, value: int) -> None:
            self.value = value

        def read(self) -> int:
            return self.value

        def fail(self, _: int) -> None:
            raise ValueError("bad batch")

    runtime = ThreadedRuntime()
    role = runtime.spawn(Failing, 3, name="role")
    value = runtime.call(role, "read")
    failed = runtime.call(role, "fail", value)  # a future argument is resolved on the role's thread
    assert runtime.wait([value, failed]) == [value, failed]
    assert runtime.get(value) == 3
    with pytest.raises(ValueError, match="bad batch"):
        runtime.get(failed)
    runtime.shutdown()


@pytest.mark.parametrize("refresh", [1, 3])
def test_actors_pull_weights_every_weight_refresh_steps_collects(tmp_path: Path, monkeypatch, refresh: int):
    from distdqn.roles import Actor

    calls = {"collect": 0, "set_weights": 0}
    for method in calls:
        original = getattr(Actor, method)

        def counted(self, *args, _original=original, _method=method):
            calls[_method] += 1
            return _original(self, *args)

        monkeypatch.setattr(Actor, method, counted)
    config = resolve_config(
        "CartPole-v1",
        overrides=FAST + ["logging.tensorboard=false", "total_steps=400", f"placement.weight_refresh_steps={refresh}"],
    )
    train(config, tmp_path / "run")
    assert calls["collect"] >= 100  # 400 agent steps of 4 envs, plus autoreset steps
    assert calls["set_weights"] == -(-calls["collect"] // refresh)  # the first collect, then every refresh-th


def test_best_holds_the_evaluated_weights_and_reproduces_its_score(tmp_path: Path):
    """`best` records the evaluation's seed and the weights' version: evaluating it again with that
    seed gives the recorded score exactly."""
    from distdqn.roles import Evaluator
    from distdqn.types import Weights

    config = resolve_config("CartPole-v1", overrides=FAST + ["logging.tensorboard=false"])
    run_dir = train(config, tmp_path / "run").run_dir
    best = load_checkpoint(run_dir / "checkpoints" / "best")
    evaluation = best.state["evaluation"]
    assert evaluation["eval_return_mean"] == best.state["counters"]["best_eval_return"]
    assert evaluation["weights_version"] <= best.state["counters"]["updates"]
    online = {k.removeprefix("online."): v.numpy() for k, v in best.tensors.items()}
    evaluator = Evaluator(config.env, config.network, evaluation["eval_episodes"], config.evaluation.epsilon)
    result = evaluator.evaluate(Weights(0, online), evaluation["eval_seed"])
    assert float(result.returns.mean()) == evaluation["eval_return_mean"]


def test_evaluation_of_an_env_without_time_limit_ends(counter_id):
    """An env without a time limit (CliffWalking is one) whose episodes the policy never ends."""
    from distdqn.roles import Evaluator

    config = resolve_config(counter_id, overrides=["env.kwargs={length: 1000000000}", "network.hidden_sizes=[4]"])
    evaluator = Evaluator(config.env, config.network, 2, max_episode_steps=300)
    weights = {k: v.numpy() for k, v in evaluator.q_network.state_dict().items()}
    result = evaluator.evaluate(Weights(0, weights), seed=0)
    assert result.lengths.tolist() == [300, 300]


UNEVEN_SHARDS = FAST + ["logging.tensorboard=false", "replay.alpha=0", "env.num_envs=3", "placement.num_shards=2"]
"""3 lanes over 2 shards: shard 0 holds lanes 0 and 2, shard 1 lane 1, so shard 0 holds twice as much."""


def _inline_run(overrides: list[str], run_dir: Path) -> TrainingRun:
    """A finished inline run whose roles (plain objects here) the test can still inspect."""
    config = resolve_config("CartPole-v1", overrides=overrides)
    prepare_run_dir(run_dir, config)
    runtime = InlineRuntime()
    run = TrainingRun(config, run_dir, runtime, Counters())
    run.run()
    runtime.shutdown()
    return run


def test_updates_draw_from_each_shard_in_proportion_to_its_size(tmp_path: Path):
    """Uniform replay over all transitions: shard 0 must give twice the rows of shard 1 (taking
    the shards in turn gave each half)."""
    run = _inline_run(UNEVEN_SHARDS, tmp_path / "run")
    sizes = [shard.size() for shard in run.shards]
    sampled = [shard.sampled for shard in run.shards]
    assert sizes[0] / sizes[1] == pytest.approx(2.0, rel=0.05)
    assert sampled[0] / sampled[1] == pytest.approx(2.0, rel=0.05)
    assert sum(sampled) == run.counters.updates * run.config.algorithm.batch_size


class _RestartingShard(ReplayShard):
    """Shard 1 comes back empty at its 200th batch and loses the 20 after it (as if in flight)."""

    def __init__(self, config, shard_index, observation_space, resumed_at=None) -> None:
        super().__init__(config, shard_index, observation_space, resumed_at)
        self._empty = lambda: ReplayShard(config, shard_index, observation_space).replay
        self.adds = 0

    def add(self, batch):
        self.adds += 1
        if self.shard_index == 1 and 200 <= self.adds < 220:
            self.replay = self._empty()
            return 0
        return super().add(batch)


def test_an_emptied_shard_gets_no_rows_and_only_real_steps_are_counted(tmp_path: Path, monkeypatch):
    """While a shard is empty, batches draw only from the others: every counted update is a
    gradient step the learner really took (an empty shard's turn used to count as one)."""
    monkeypatch.setattr(roles_module, "ReplayShard", _RestartingShard)
    run = _inline_run(UNEVEN_SHARDS, tmp_path / "run")
    assert run.shards[1].adds > 220 and run.counters.updates > 400
    assert run.learners[0].updates == run.counters.updates
