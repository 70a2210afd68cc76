"""distdqn tune: search-space specs, refusals, a donor's checkpoint adopted with the trial's own
hyperparameters, and real Ray Tune runs (PBT exploiting a trial that cannot learn; random search
over a grid)."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from tune_runs import QUIET_RUN, run_tune, tune_log

from distdqn.cli import main
from distdqn.config import load_config_toml, resolve_config
from distdqn.errors import UserError
from distdqn.run.counters import Counters, Reporting
from distdqn.run.train import resume, train
from distdqn.storage.checkpoint import adopt_checkpoint, load_checkpoint, load_resume_state
from distdqn.tools.search_space import parse_param, parse_start
from distdqn.tools.tuning import TuneOptions, check_specs


def _config(*overrides: str, total_steps: int = 3000):
    return resolve_config("CartPole-v1", None, [*QUIET_RUN, f"total_steps={total_steps}", *overrides])


def _options(*params: str, scheduler: str = "pbt", starts: tuple[str, ...] = ()) -> TuneOptions:
    return TuneOptions(
        specs=tuple(parse_param(text) for text in params),
        scheduler=scheduler,  # type: ignore[arg-type]
        trials=2,
        interval=1000,
        run_dir=Path("unused"),
        starts=tuple(parse_start(text) for text in starts),
    )


# -- specs --------------------------------------------------------------------------------------
def test_every_kind_of_param_spec_parses() -> None:
    assert parse_param("algorithm.lr=loguniform(1e-4,3e-3)").values == (1e-4, 3e-3)  # YAML 1.1 reads 1e-4 as text
    assert parse_param("algorithm.gamma=uniform(0.9, 0.999)").values == (0.9, 0.999)
    assert parse_param("algorithm.n_step=randint(1,5)").values == (1, 5)
    assert parse_param("algorithm.double_dqn=choice(true,false)").values == (True, False)
    assert parse_param("network.hidden_sizes=grid([64,64],[256])").values == ((64, 64), (256,))
    assert parse_start("algorithm.lr=1e-7; algorithm.n_step=3") == {"algorithm.lr": 1e-7, "algorithm.n_step": 3}


def test_a_perturbed_value_is_held_in_its_range_and_typed() -> None:
    lr = parse_param("algorithm.lr=loguniform(1e-4,3e-3)")
    assert lr.fit(3e-3 * 1.2) == 3e-3 and lr.fit(1e-4 * 0.8) == 1e-4 and lr.fit(1e-3) == 1e-3
    n_step = parse_param("algorithm.n_step=randint(1,5)")
    assert n_step.fit(3.6) == 4 and isinstance(n_step.fit(3.6), int) and n_step.fit(6.0) == 5
    widest = parse_param(f"algorithm.target_update_interval=randint(1,{2**63 - 1})")
    assert widest.fit((2**63 - 1) * 1.2) == 2**63 - 1  # not float(2**63 - 1), which is 2**63
    assert widest.fit(np.int64(2**62 + 1)) == 2**62 + 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("algorithm.lr", "KEY=KIND(ARGS)"),
        ("algorithm.lr=1e-3", "KEY=KIND(ARGS)"),
        ("algorithm.lr=normal(0,1)", "unknown kind 'normal'"),
        ("algorithm.lr=uniform(1)", "needs two numbers"),
        ("algorithm.lr=uniform(3,1)", "needs low < high"),
        ("algorithm.lr=loguniform(0,1)", "needs low > 0"),
        ("algorithm.n_step=randint(1,2.5)", "two integers"),
        ("algorithm.n_step=choice()", "at least one value"),
        ("env.kwargs=choice(&a {size: 5}, *a)", "the alias *a is refused"),
        ("algorithm.target_update_interval=randint(1,99999999999999999999999)", "needs ends within int64"),
        ("algorithm.gamma=uniform(-1e308,1e308)", "spans more than a float holds"),
        ("algorithm.lr=uniform(0," + "9" * 400 + ")", "spans more than a float holds, got '0,99999"),
        ("algorithm.lr=loguniform(1e-4," + "9" * 4000 + ")", "spans more than a float holds"),
        ("algorithm.lr=" + "x" * 5000 + "(0,1)", "unknown kind 'xxxxx"),
        ("algorithm.n_step=randint(1," + "9" * 5000 + ")", "cannot read the values"),
    ],
)
def test_a_bad_param_spec_is_one_line(text: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        parse_param(text)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 300


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("network.hidden_sizes=[&a 64, *a]", "the alias *a is refused"),
        ("algorithm.n_step=" + "9" * 5000, "cannot read the value"),
    ],
)
def test_a_bad_start_is_one_line(text: str, message: str) -> None:
    assert parse_start("network.hidden_sizes=&a [64]") == {"network.hidden_sizes": (64,)}  # an anchor alone is fine
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        parse_start(text)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("params", "starts", "message"),
    [
        (("algorithm.nope=uniform(0,1)",), (), "unknown config field"),
        (("placement.num_actors=randint(1,4)",), (), "not a hyperparameter"),
        (("evaluation.episodes=randint(1,4)",), (), "not a hyperparameter"),
        (("algorithm.gamma=uniform(0.5,1.5)",), (), "algorithm.gamma"),
        (("algorithm.lr=loguniform(1e-4,1e-2)",), ("algorithm.lr=0.5",), "lies outside"),
        (("algorithm.lr=loguniform(1e-4,1e-2)",), ("algorithm.gamma=0.9",), "not one of the --param fields"),
        (("network.hidden_sizes=choice([64],[128])",), (), "changes the network's shapes"),
        (("network.dueling=choice(false,true)",), (), "changes the network's shapes"),
        (("algorithm.n_step=choice(1,3)",), (), "stored replay"),
        (("replay.capacity=choice(5000,9000)",), (), "stored replay"),
        (("env.num_envs=choice(2,4)",), (), "stored replay"),
        (("algorithm.gamma=uniform(0.9,0.99)",), (), "algorithm.gamma=0.9 changes what the stored replay"),
    ],
)
def test_pbt_refuses_what_a_trial_could_not_run_or_an_exploit_could_not_load(params, starts, message) -> None:
    with pytest.raises(UserError, match=message) as raised:
        check_specs(_config(), _options(*params, starts=starts))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            "env.kwargs=choice({layout_seed: 1, size: 5},{layout_seed: 1, size: -1})",
            "--param env.kwargs={'layout_seed': 1, 'size': -1}: env 'distdqn/Maze-v0' rejected",
        ),
        ("env.kwargs=choice({size: 5},{sise: 5})", "unexpected keyword argument 'sise'"),
        ("env.id=choice(distdqn/Maze-v0,distdqn/Nope-v0)", "--param env.id='distdqn/Nope-v0': cannot make env"),
    ],
)
def test_an_env_value_the_env_rejects_is_refused_before_any_trial(param: str, message: str) -> None:
    """Each trial that drew it failed, after Ray had started: four ran before the first said so."""
    maze = resolve_config("distdqn/Maze-v0", None, [*QUIET_RUN, "total_steps=3000"])
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        check_specs(maze, _options(param, scheduler="random"))
    assert "\n" not in str(raised.value)


def test_random_search_may_vary_the_network_and_pb2_only_searches_ranges() -> None:
    check_specs(_config(), _options("network.hidden_sizes=choice([64],[128])", scheduler="random"))
    with pytest.raises(UserError, match="pb2 searches ranges only"):
        check_specs(_config(), _options("algorithm.n_step=choice(1,3)", scheduler="pb2"))


def test_the_cli_refuses_a_shape_changing_mutation_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(["tune", "--param", "network.hidden_sizes=choice([64,64],[256,256])", "--run-dir", str(tmp_path / "t")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "network.hidden_sizes" in error and "random or asha" in error
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "param", ["env.kwargs=choice({observation: onehot},{observation: pixels})", f"algorithm.n_step=randint(1,{2**64})"]
)
def test_the_cli_refuses_what_no_trial_could_run_before_ray_starts(tmp_path: Path, capsys, param: str) -> None:
    argv = ["tune", "--env", "distdqn/Maze-v0", "--scheduler", "random", "--param", param]
    code = main([*argv, "--run-dir", str(tmp_path / "t")])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("distdqn: error: --param ") and error.count("\n") == 1, error
    assert not (tmp_path / "t").exists()


# -- adopting a donor's checkpoint ------------------------------------------------------------------
def test_an_adopted_checkpoint_brings_the_donors_replay_and_takes_the_adopters_hyperparameters(
    tmp_path: Path,
) -> None:
    """What a PBT exploit does inside a trial, without Tune: the adopter continues from the donor's
    env steps with the donor's replay and weights, and trains with its own learning rate from the
    first update; its metrics keep its own lines up to the donor's step."""
    donor_config = _config("algorithm.lr=1e-3", "algorithm.lr_end=null", "seed=1", total_steps=3000)
    adopter_config = _config("algorithm.lr=1e-4", "algorithm.lr_end=null", "seed=2", total_steps=2000)
    train(donor_config, tmp_path / "donor")
    train(adopter_config, tmp_path / "adopter")
    donor_latest = tmp_path / "donor" / "checkpoints" / "latest"
    donor_steps = load_checkpoint(donor_latest).state["counters"]["env_steps"]
    donor_replay = sum(shard["inserted"] for shard in load_resume_state(donor_latest)["shards"])

    adopt_checkpoint(donor_latest, tmp_path / "adopter" / "checkpoints")
    reports: list[tuple[int, float, int]] = []

    def send(counters: Counters, latest: Path) -> None:
        checkpoint = load_checkpoint(latest)
        replay = sum(shard["inserted"] for shard in load_resume_state(latest)["shards"])
        reports.append((counters.env_steps, checkpoint.state["learner"]["param_groups"][0]["lr"], replay))

    perturbed = _config("algorithm.lr=5e-4", "algorithm.lr_end=null", "seed=2", total_steps=5000)
    resume(tmp_path / "adopter", perturbed, reporting=Reporting(1000, send), adopted=True)

    assert [steps // 1000 for steps, _, _ in reports] == [4, 5]
    assert all(lr == 5e-4 for _, lr, _ in reports)
    assert reports[0][2] > donor_replay  # the donor's replay went on filling; an empty one would hold ~1000
    logged = [
        json.loads(line)["env_steps"] for line in (tmp_path / "adopter" / "metrics.jsonl").read_text().splitlines()
    ]
    assert logged == sorted(logged) and donor_steps < 3100
    assert max(step for step in logged if step <= donor_steps) <= 2002  # the adopter's own lines, then the lineage's


# -- real Ray Tune runs ---------------------------------------------------------------------------
def test_pbt_exploits_the_trial_that_cannot_learn_and_its_new_learning_rate_is_in_effect(
    embedded_ray, tmp_path: Path
) -> None:
    tune_dir = tmp_path / "pbt"
    code = run_tune(
        tune_dir,
        *("--seed", "0", "--param", "algorithm.lr=loguniform(1e-7,3e-3)"),
        *("--start", "algorithm.lr=1e-7", "--start", "algorithm.lr=1e-3"),
        # decisions at 2000 and 4000 env steps (the report at 6000 ends a trial); the exploit came at
        # 4000 when measured, its record showing ~175 (8000 steps added a decision at 6000)
        *("--trials", "2", "--total-steps", "6000", "--interval", "2000", "--resample-probability", "0"),
        # synchronous: each decision waits for both trials' reports, so it does not depend on which
        # trial the 2 CPUs ran ahead (CI saw the donor finish before the stuck trial's first report)
        "--synch",
        overrides=("algorithm.lr_end=null",),
    )
    assert code == 0
    log = tune_log(tune_dir)
    first = {record["trial"]: record["params"]["algorithm.lr"] for record in reversed(log)}
    stuck = next(trial for trial, lr in first.items() if lr == 1e-7)
    learner = next(trial for trial in first if trial != stuck)
    stuck_log = [record for record in log if record["trial"] == stuck]
    exploits = [record for record in stuck_log if record["restored_from"] is not None]
    assert exploits and exploits[0]["restored_from"] == learner
    after = exploits[0]["params"]["algorithm.lr"]
    assert after == pytest.approx(1e-3 * 0.8) or after == pytest.approx(1e-3 * 1.2)  # the donor's, perturbed
    assert exploits[0]["eval_return"] > 50  # the donor's weights, not the stuck ones (~9)

    # the trial is an ordinary run whose optimizer trains with the perturbed rate
    final = stuck_log[-1]["params"]["algorithm.lr"]
    latest = load_checkpoint(tune_dir / "trials" / stuck / "checkpoints" / "latest")
    assert [group["lr"] for group in latest.state["learner"]["param_groups"]] == [pytest.approx(final)]
    assert latest.config.algorithm.lr == pytest.approx(final) and final != 1e-7
    best = load_config_toml(tune_dir / "best.toml")
    assert best.total_steps == 6000 and best.algorithm.lr != 1e-7
    assert main(["evaluate", str(tune_dir / "trials" / stuck / "checkpoints" / "latest"), "--episodes", "2"]) == 0


def test_random_search_over_a_grid_runs_every_value_and_writes_the_best_config(embedded_ray, tmp_path: Path) -> None:
    tune_dir = tmp_path / "random"
    code = run_tune(
        tune_dir,
        *("--scheduler", "random", "--param", "algorithm.n_step=grid(1,3)", "--trials", "1"),
        *("--total-steps", "2000", "--interval", "1000"),
    )
    assert code == 0
    log = tune_log(tune_dir)
    by_trial = {record["trial"]: record for record in log}
    assert sorted(record["params"]["algorithm.n_step"] for record in by_trial.values()) == [1, 3]
    assert all(record["restored_from"] is None for record in log)
    for trial, record in by_trial.items():
        run = tune_dir / "trials" / trial
        assert load_config_toml(run / "config.toml").algorithm.n_step == record["params"]["algorithm.n_step"]
        assert (run / "metrics.jsonl").is_file()
    best_trial = max(by_trial.values(), key=lambda record: record["eval_return"])
    assert load_config_toml(tune_dir / "best.toml").algorithm.n_step == best_trial["params"]["algorithm.n_step"]


def test_a_trial_the_cluster_cannot_hold_is_refused_before_anything_is_written(
    embedded_ray, tmp_path: Path, capsys
) -> None:
    """On the ray runtime a trial reserves its roles too (1 + 1 + 0.5 + 1 + 0.5 CPUs by default);
    Tune would wait for them forever on a 2-CPU cluster."""
    code = main(
        [
            "tune",
            "--param",
            "algorithm.lr=loguniform(1e-4,1e-3)",
            "--set",
            "placement.runtime=ray",
            "--cpus",
            "2",
            "--run-dir",
            str(tmp_path / "t"),
        ]
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error[-1] == (
        "distdqn: error: one trial needs 4 CPU (its driver and, on the ray runtime, every role); the Ray cluster has 2"
    )
    assert not (tmp_path / "t").exists()


class _FakeTrial:
    def is_finished(self) -> bool:
        return False


class _FakeState:
    def __init__(self, score: float) -> None:
        self.last_score = score


@pytest.mark.parametrize("scheduler", ["pbt", "pb2"])
def test_a_trial_copies_only_a_strictly_better_one(scheduler: str) -> None:
    """All trials tied (a maze before any finds the goal): nobody copies anybody."""
    from distdqn.tools.tuning import _scheduler

    pbt = _scheduler(_options("algorithm.lr=loguniform(1e-4,1e-2)", scheduler=scheduler), total_steps=3000)
    trials = [_FakeTrial() for _ in range(4)]
    pbt._trial_state = {trial: _FakeState(-2.0) for trial in trials}
    lower, upper = pbt._quantiles()
    assert lower == [] and len(upper) == 1
    pbt._trial_state[trials[3]] = _FakeState(0.8)
    lower, upper = pbt._quantiles()
    assert upper == [trials[3]] and len(lower) == 1 and lower[0] is not trials[3]


def test_ray_worker_lines_are_plain_when_stderr_is_no_terminal(monkeypatch: pytest.MonkeyPatch):
    """`tune 2>log` filled the log with the ANSI colour codes of Ray's `(pid=...)` prefixes."""
    import io

    from distdqn.runtime.ray import plain_worker_lines, ray  # first: it sets Ray's environment

    print_worker_logs = ray._private.worker.print_worker_logs  # how the driver prints a worker's lines

    line = {"pid": 4321, "ip": "127.0.0.1", "localhost": "127.0.0.1", "lines": ["trial says hi"], "actor_name": "T"}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    plain_worker_lines(Terminal())  # a terminal keeps Ray's colours
    coloured = io.StringIO()
    print_worker_logs(line, coloured)
    assert "\x1b[" in coloured.getvalue()

    plain_worker_lines(io.StringIO())
    plain = io.StringIO()
    print_worker_logs(line, plain)
    assert plain.getvalue() == "(T pid=4321) trial says hi\n"

    monkeypatch.setenv("RAY_COLOR_PREFIX", "1")  # the user's choice stays
    plain_worker_lines(io.StringIO())
    assert os.environ["RAY_COLOR_PREFIX"] == "1"
