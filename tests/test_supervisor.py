"""A role that cannot come back: warned about while it is down, then the run goes on without a
lost actor, or stops with `latest` intact and says how to resume. Simulated on the inline runtime
(a Ray node's loss, which Ray reports as a role that will not restart, is in test_ray.py's plan)."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distdqn.config import override_config, resolve_config
from distdqn.errors import RoleLost
from distdqn.run import supervisor as supervisor_module
from distdqn.run.counters import Counters
from distdqn.run.loop import TrainingRun
from distdqn.run.run_dir import prepare_run_dir
from distdqn.run.supervisor import Supervisor
from distdqn.run.train import resume
from distdqn.runtime import InlineRuntime, RoleFailed
from distdqn.storage.checkpoint import load_checkpoint, load_resume_state

RUN = [
    "total_steps=2000",
    "algorithm.learning_starts=200",
    "placement.num_actors=2",
    "checkpoint.every_steps=600",
    "logging.every_steps=500",
    "logging.progress=false",
    "logging.tensorboard=false",
    "evaluation.every_steps=1200",
    "evaluation.episodes=2",
]


class Gone:
    """The future of a call to a role whose node is gone (or of a call that needed its result)."""


class NodeLoss(InlineRuntime):
    """The inline runtime, where role `doomed` is gone for good once `when()` is true: its calls,
    and calls on its results, fail as Ray fails them for a role pinned to a node that is gone."""

    def __init__(self, doomed: str, when: Callable[[], bool]) -> None:
        super().__init__()
        self.doomed, self.when, self.gone = doomed, when, False
        self.names: dict[int, str] = {}

    def spawn(self, role: type, *args: Any, name: str) -> Any:
        handle = super().spawn(role, *args, name=name)
        self.names[id(handle)] = name
        return handle

    def _is_gone(self, handle: Any, args: tuple = ()) -> bool:
        if self.names.get(id(handle)) == self.doomed:
            self.gone = self.gone or self.when()
            return self.gone
        return any(isinstance(argument, Gone) for argument in args)

    def call(self, handle: Any, method: str, *args: Any, num_returns: int = 1) -> Any:
        if self._is_gone(handle, args):
            return Gone() if num_returns == 1 else tuple(Gone() for _ in range(num_returns))
        return super().call(handle, method, *args, num_returns=num_returns)

    def where(self, handle: Any) -> Any:
        return Gone() if self._is_gone(handle) else super().where(handle)

    def get(self, future: Any) -> Any:
        if isinstance(future, Gone):
            raise RoleFailed(self.doomed, "its node is gone", restarting=False)
        return super().get(future)


def _run(run_dir: Path, doomed: str) -> tuple[TrainingRun, NodeLoss]:
    config = resolve_config("CartPole-v1", overrides=RUN)
    prepare_run_dir(run_dir, config)
    runtime = NodeLoss(doomed, lambda: (run_dir / "checkpoints" / "latest").exists())
    return TrainingRun(config, run_dir, runtime, Counters()), runtime


def test_a_lost_actor_is_left_out_and_the_run_finishes_with_the_other(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    run, runtime = _run(run_dir, "actor-1")
    try:
        counters = run.run()
    finally:
        runtime.shutdown()
    assert counters.env_steps >= 2000
    assert run.supervisor.lost == {"actor-1"}
    err = capsys.readouterr().err
    assert err.count("actor-1 is lost (its node is gone); the run goes on with 1 actor\n") == 1
    lines = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert '"actors_lost": 1' in lines[-1] and '"actors_lost"' not in lines[0]
    # `latest` holds the replay and the live actor's state; the lost one starts afresh on resume
    saved = load_resume_state(run_dir / "checkpoints" / "latest")
    assert saved["actors"][0] is not None and saved["actors"][1] is None
    resumed = resume(run_dir, override_config(run.config, ["total_steps=2300"], "test")).counters
    assert resumed.env_steps >= 2300


@pytest.mark.parametrize("doomed", ["learner-0", "shard-0"])
def test_a_lost_learner_or_shard_stops_the_run_with_latest_and_says_how_to_resume(tmp_path: Path, doomed: str):
    run_dir = tmp_path / "run"
    run, runtime = _run(run_dir, doomed)
    try:
        with pytest.raises(RoleLost) as stopped:
            run.run()
    finally:
        runtime.shutdown()
    kept = load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"]
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(f"{doomed} cannot come back (its node is gone) at env step ")
    assert f"checkpoints/latest keeps env step {kept}: continue with `distdqn train --resume {run_dir}`" in message


class DownFor:
    """A runtime whose role `doomed` goes down for `seconds` at `fail()`: restarting meanwhile,
    or, with `restarting` false, gone for good as far as the runtime knows."""

    def __init__(self, seconds: float, restarting: bool = True) -> None:
        self.seconds, self.restarting = seconds, restarting
        self.down_until = 0.0

    def fail(self) -> None:
        self.down_until = time.monotonic() + self.seconds

    def where(self, handle: str) -> str:
        return handle

    def get(self, handle: str) -> dict[str, Any]:
        if handle == "doomed" and time.monotonic() < self.down_until:
            raise RoleFailed(handle, "restarting" if self.restarting else "its node is gone", self.restarting)
        return {"pid": 1, "node_id": "n", "node_ip": "127.0.0.1", "restarted": False}


def _supervisor(runtime: DownFor, tmp_path: Path) -> Supervisor:
    handles = {"actor-0": "alive", "actor-1": "doomed"}
    supervisor = Supervisor(runtime, tmp_path, handles, Counters(), print, RoleLost)  # type: ignore[arg-type]
    runtime.fail()
    return supervisor


def test_a_role_that_stays_down_is_warned_about_periodically_then_lost(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(supervisor_module, "RESTART_WAIT_S", 1.0)
    monkeypatch.setattr(supervisor_module, "RESTART_WARN_S", 0.4)
    supervisor = _supervisor(DownFor(seconds=60), tmp_path)
    supervisor.reconcile()
    assert supervisor.lost == {"actor-1"}
    warnings = capsys.readouterr().err.splitlines()
    assert [line.split(" is not back")[0] for line in warnings[:-1]] == ["distdqn: warning: actor-1"] * 2
    assert "(restarting; lost after 1 s)" in warnings[0]
    assert warnings[-1].startswith("distdqn: warning: actor-1 is lost (not back after 1 s)")


def test_a_role_back_within_the_bound_is_a_restart_not_a_loss(tmp_path: Path, monkeypatch):
    supervisor = _supervisor(DownFor(seconds=0.5), tmp_path)
    supervisor.reconcile()
    assert supervisor.lost == set()


def test_a_role_the_runtime_says_will_not_restart_is_lost_at_once(tmp_path: Path):
    supervisor = _supervisor(DownFor(seconds=60, restarting=False), tmp_path)
    started = time.monotonic()
    supervisor.reconcile()
    assert time.monotonic() - started < 0.5
    assert supervisor.lost == {"actor-1"}
    with pytest.raises(RoleLost):  # the last actor left: the run cannot go on
        supervisor._lose("actor-0", "its node is gone")
