"""Changing a run while it trains: a resume or a PBT exploit under a changed config takes effect
from that point (distdqn.config_changes), and nothing on the way crashes or loses data."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distdqn.config import Config, override_config, resolve_config
from distdqn.config_changes import Schedule, follow_lr, replay_discarded_by
from distdqn.errors import UserError
from distdqn.roles import ReplayShard
from distdqn.run import roles as roles_module
from distdqn.run.counters import Counters
from distdqn.run.loop import TrainingRun
from distdqn.run.run_dir import prepare_run_dir
from distdqn.run.train import resume, train
from distdqn.runtime import InlineRuntime
from distdqn.schedules import learning_rate
from distdqn.storage.checkpoint import adopt_checkpoint, load_checkpoint, load_resume_state
from distdqn.storage.run_lock import RunLock
from distdqn.tools.tuning import trial_config
from distdqn.types import ReplayTerms, UpdateResult

DONOR_STEPS = 1200
FAST = [
    f"total_steps={DONOR_STEPS}",
    "algorithm.learning_starts=200",
    "algorithm.n_step=1",
    "algorithm.replay_ratio=0.5",
    "evaluation.every_steps=600",
    "evaluation.episodes=2",
    "logging.every_steps=200",
    "logging.progress=false",
    "logging.tensorboard=false",
    "checkpoint.every_steps=600",
    "checkpoint.replay=true",
    "replay.alpha=0.6",
    "seed=1",
]


def _config(*overrides: str) -> Config:
    return resolve_config("CartPole-v1", overrides=[*FAST, *overrides])


@pytest.fixture(scope="module")
def donor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run whose `latest` holds its replay and every role's state."""
    run_dir = tmp_path_factory.mktemp("donor") / "run"
    train(_config(), run_dir)
    return run_dir


def _copy(donor: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(donor, copy, symlinks=True)
    return copy


def _continued(donor: Path, tmp_path: Path, *changes: str) -> tuple[Path, Counters]:
    """Resume a copy of the donor under its own config with `changes`."""
    run_dir = _copy(donor, tmp_path)
    saved = load_checkpoint(run_dir / "checkpoints" / "latest").config
    return run_dir, resume(run_dir, override_config(saved, list(changes), origin="test")).counters


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- 1. the replay ratio --------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.25, 1.0])
def test_a_new_replay_ratio_holds_from_the_resume_point(donor: Path, tmp_path: Path, ratio: float):
    """Applied to the whole history, 0.25 after 0.5 owed no update for ~1,000 steps, and 1.0 burst
    and crashed."""
    before = Counters(**load_checkpoint(donor / "checkpoints" / "latest").state["counters"])
    _, after = _continued(donor, tmp_path, "total_steps=2400", f"algorithm.replay_ratio={ratio}")
    steps, updates = after.env_steps - before.env_steps, after.updates - before.updates
    assert steps > 1000
    assert abs(updates - ratio * steps) <= 2


def test_updates_over_the_lag_bound_are_throttled_not_crashed(tmp_path: Path):
    """One group of updates larger than max_update_lag: the throttle took futures the loop still held."""
    for runtime in ("inline", "threads"):
        config = _config(f"placement.runtime={runtime}", "placement.max_update_lag=1", "checkpoint.replay=false")
        counters = train(config, tmp_path / runtime).counters
        assert counters.env_steps >= DONOR_STEPS and counters.updates > 0


def test_a_learner_group_recovery_while_draining_does_not_lose_track(tmp_path: Path, monkeypatch):
    """A recovery empties the updates in flight while `finish_all` iterates over them."""
    config = _config("total_steps=400", "checkpoint.replay=false")
    prepare_run_dir(tmp_path / "run", config)
    runtime = InlineRuntime()
    run = TrainingRun(config, tmp_path / "run", runtime, Counters())
    run.run()
    run.learning.in_flight = {runtime.put(UpdateResult(None, {})): 1 for _ in range(3)}
    broken = run.learning.finish

    def recovering(future):
        broken(future)
        run.learning.in_flight.clear()  # what a learner-group recovery does to the updates in flight

    monkeypatch.setattr(run.learning, "finish", recovering)
    run._drain()  # a KeyError before the fix
    runtime.shutdown()
    assert run.learning.in_flight == {}


# -- 2. env settings ------------------------------------------------------------------------------
def test_a_changed_env_setting_reaches_the_actors(donor: Path, tmp_path: Path):
    """Exact resume restored TimeLimit's limit over the new envs: episodes went on to ~100 steps."""
    start = load_checkpoint(donor / "checkpoints" / "latest").state["counters"]["env_steps"]
    run_dir, _ = _continued(donor, tmp_path, "total_steps=1800", "env.max_episode_steps=5")
    after = [r for r in _records(run_dir) if r["env_steps"] > start and "episode_length_mean" in r]
    assert after and all(r["episode_length_mean"] <= 5 for r in after)


# -- 3. what the replay was built under -----------------------------------------------------------
def test_a_new_gamma_recomputes_the_stored_one_step_discounts(donor: Path, tmp_path: Path):
    run_dir, _ = _continued(donor, tmp_path, "total_steps=1210", "algorithm.gamma=0.5")
    state = load_resume_state(run_dir / "checkpoints" / "latest")
    discounts = np.concatenate([np.asarray(shard["replay"]["arrays"]["discounts"]) for shard in state["shards"]])
    sampleable = np.concatenate([np.asarray(shard["replay"]["arrays"]["sampleable"]) for shard in state["shards"]])
    assert set(np.unique(discounts[sampleable]).tolist()) == {0.0, 0.5}


def test_a_new_alpha_and_priority_eps_recompute_the_masses_from_the_priorities(donor: Path):
    config = _config()
    state = load_resume_state(donor / "checkpoints" / "latest")["shards"][0]
    frames = _frame_space(config)
    kept = ReplayShard(config, 0, frames)
    kept.restore(copy.deepcopy(state))  # restoring takes the arrays it is given
    new = override_config(config, ["replay.alpha=0.3", "replay.priority_eps=0.01"], origin="test")
    shard = ReplayShard(new, 0, frames)
    shard.restore(state, ReplayTerms(config.algorithm.gamma, 0.6, config.replay.priority_eps))
    slots = np.flatnonzero(kept.replay._sampleable)
    priorities = kept.replay._tree.values(slots) ** (1 / 0.6) - config.replay.priority_eps
    assert len(slots) > 100 and priorities.std() > 0
    assert np.allclose(shard.replay._tree.values(slots), (priorities + 0.01) ** 0.3)


def _frame_space(config: Config):
    from distdqn.envs import env_spaces

    return env_spaces(config.env)[0]


@pytest.mark.parametrize(
    ("change", "named"),
    [("algorithm.n_step=3", "algorithm.n_step 1 -> 3"), ("replay.capacity=5000", "replay.capacity")],
)
def test_a_change_the_replay_cannot_survive_is_said_in_one_line(donor, tmp_path, capsys, change, named):
    _continued(donor, tmp_path, "total_steps=1210", change)
    lines = [line for line in capsys.readouterr().err.splitlines() if "empty replay" in line]
    assert len(lines) == 1 and named in lines[0]


def test_gamma_with_n_step_returns_empties_the_replay_and_one_step_returns_keep_it():
    base = resolve_config("CartPole-v1", overrides=["algorithm.n_step=3"])
    assert replay_discarded_by(base, override_config(base, ["algorithm.gamma=0.5"], origin="t")) == ["algorithm.gamma"]
    one_step = override_config(base, ["algorithm.n_step=1"], origin="t")
    assert replay_discarded_by(one_step, override_config(one_step, ["algorithm.gamma=0.5"], origin="t")) == []


# -- 4. schedules ---------------------------------------------------------------------------------
def test_beta_continues_from_where_it_stood_when_the_run_is_extended(donor: Path, tmp_path: Path, monkeypatch):
    """Annealed over the new total_steps from step 0, beta fell from 1.0 back to 0.7."""
    betas: list[float] = []
    sample = ReplayShard.sample

    def spy(self, rows, beta, *args):
        betas.append(beta)
        return sample(self, rows, beta, *args)

    monkeypatch.setattr(ReplayShard, "sample", spy)
    _continued(donor, tmp_path, "total_steps=2400")
    assert betas and min(betas) == 1.0


def test_a_schedule_rebased_at_a_change_is_continuous_and_reaches_its_new_end():
    schedule = Schedule(0, 0.4, 1.0, 1000)
    assert schedule.at(500) == pytest.approx(0.7)
    extended = schedule.rebased(500, 1.0, 2000)
    assert extended.at(500) == pytest.approx(0.7)
    assert extended.at(1250) == pytest.approx(0.85)
    assert extended.at(2000) == 1.0
    assert schedule.rebased(500, 1.0, 1000) is schedule  # nothing changed: bit-exact


def test_a_new_lr_scales_the_whole_decay():
    """PBT's x1.2 on lr shrank to x1.0 by the end of the decay, where lr_end took over."""
    base = resolve_config("CartPole-v1", overrides=["algorithm.lr=1e-3", "algorithm.lr_end=1e-4"])
    raised = follow_lr(base, override_config(base, ["algorithm.lr=1.2e-3"], origin="t"))
    for steps in (0, 25_000, base.algorithm.lr_decay_steps, 10**6):
        old = learning_rate(base.algorithm.lr, base.algorithm.lr_end, base.algorithm.lr_decay_steps, steps)
        new = learning_rate(raised.algorithm.lr, raised.algorithm.lr_end, raised.algorithm.lr_decay_steps, steps)
        assert new == pytest.approx(1.2 * old)
    chosen = follow_lr(base, override_config(base, ["algorithm.lr=2e-3", "algorithm.lr_end=5e-5"], origin="t"))
    assert chosen.algorithm.lr_end == 5e-5  # an lr_end given with it is kept
    trial = trial_config(base, {"algorithm.lr": 2e-3}, trial_index=0)
    assert trial.algorithm.lr_end == pytest.approx(2e-4)


# -- 5. random streams ----------------------------------------------------------------------------
def _learner_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "latest").tensors


def test_an_exploited_trial_draws_its_own_random_numbers(donor: Path, tmp_path: Path):
    """The recipient continued its donor's exploration, env and sampling streams: with the same
    hyperparameters it trained on exactly the donor's numbers."""
    donor_copy, _ = _continued(donor, tmp_path / "donor", "total_steps=1800")
    recipient = tmp_path / "recipient"
    adopt_checkpoint(donor / "checkpoints" / "latest", recipient / "checkpoints")
    config = override_config(_config(), ["total_steps=1800", "seed=2"], origin="test")
    resume(recipient, config, adopted=True)
    mine, theirs = _learner_tensors(recipient), _learner_tensors(donor_copy)
    assert any(not torch.equal(mine[name], theirs[name]) for name in theirs if name.startswith("online."))


def test_a_resume_without_the_replay_branches_every_stream_off_at_the_resume_point(
    donor: Path, tmp_path: Path, monkeypatch
):
    """Without a snapshot every role was built as at the run's start: the same streams again."""
    branches: list[int | None] = []
    actor_class = roles_module.Actor

    class Spy(actor_class):  # type: ignore[misc, valid-type]
        def __init__(self, config, index, progress=0, resumed_at=None):
            branches.append(resumed_at)
            super().__init__(config, index, progress, resumed_at)

    monkeypatch.setattr(roles_module, "Actor", Spy)
    _continued(donor, tmp_path, "total_steps=1210", "replay.capacity=5000")  # the replay cannot be kept
    steps = load_checkpoint(donor / "checkpoints" / "latest").state["counters"]["env_steps"]
    assert branches == [steps]


# -- 9. the lock comes first ----------------------------------------------------------------------
def test_a_process_refused_by_the_lock_touches_nothing(tmp_path: Path, monkeypatch):
    """Two `train` on one new directory: the one that loses the lock wrote config.toml before it
    tried, then its cleanup deleted the winner's files."""
    run_dir = tmp_path / "run"
    live_files = {"config.toml": "live", "metrics.jsonl": '{"env_steps": 1}\n', "placement.json": "{}"}
    enter = RunLock.__enter__
    winner = RunLock(run_dir)

    def taken_meanwhile(lock: RunLock) -> RunLock:
        for name, text in live_files.items():  # the winner, between our check and our lock
            (lock.path.parent / name).write_text(text)
        enter(winner)
        return enter(lock)

    monkeypatch.setattr(RunLock, "__enter__", taken_meanwhile)
    with pytest.raises(UserError, match="in use"):
        train(_config(), run_dir)
    winner.__exit__(None, None, None)
    assert {name: (run_dir / name).read_text() for name in live_files} == live_files
