"""Bad input, thrown as a hostile but realistic user would: every case is one line
`distdqn: error: ...` naming the bad value, exit code 2, no traceback, nothing written."""

from pathlib import Path

import pytest

from distdqn.cli import main

BAD_SETTINGS = [
    ("algorithm.lr=.inf", "algorithm.lr"),
    ("algorithm.lr=1e308", "algorithm.lr"),
    ("stop_return=.nan", "stop_return"),
    ("algorithm.tau=.inf", "algorithm.tau"),
    ("algorithm.gamma=.nan", "algorithm.gamma"),
    ("replay.alpha=.inf", "replay.alpha"),
    ("replay.capacity=true", "capacity"),
    ("algorithm.batch_size=false", "batch_size"),
    ("seed=-1", "seed"),
    (f"seed={2**70}", "seed"),
    ("seed=true", "seed"),
    ("network.hidden_sizes=[-5]", "network.hidden_sizes"),
    ("network.hidden_sizes=[0]", "network.hidden_sizes"),
    ("env.kwargs={render_mode: 5}", "render_mode"),
    ("placement.rate_limit=unlimited", "rate_limit"),
    ("env.num_envs=0", "env.num_envs"),
    ("algorithm.n_step=0", "algorithm.n_step"),
]


@pytest.mark.parametrize(("setting", "named"), BAD_SETTINGS)
def test_bad_setting_is_one_line_and_writes_nothing(tmp_path: Path, capsys, setting: str, named: str):
    run_dir = tmp_path / "run"
    code = main(["train", "--set", setting, "--total-steps", "10", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("distdqn: error: ") and "\n" not in err and named in err, err
    assert not run_dir.exists()


def test_a_huge_bad_value_is_echoed_as_a_short_prefix(tmp_path: Path, capsys):
    code = main(["train", "--set", "algorithm.lr=" + "9" * 5000, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err) < 300, err


IMPORTING_ID = "gymnasium.envs.classic_control:CartPole-v1"  # gymnasium imports the module part first
QUICK = ["--total-steps", "8", "--set", "logging.progress=false", "--set", "logging.tensorboard=false",
         "--set", "algorithm.learning_starts=0", "--set", "evaluation.episodes=1"]


def test_an_env_id_that_imports_a_module_needs_consent_when_it_comes_from_a_file(tmp_path: Path, capsys):
    """A run's files must not run code: `this:CartPole-v1` in a checkpoint printed the Zen of Python."""
    config_file = tmp_path / "shared.toml"
    config_file.write_text(f'[env]\nid = "{IMPORTING_ID}"\n')
    assert main(["train", "--config", str(config_file), "--run-dir", str(tmp_path / "refused"), *QUICK]) == 2
    assert "--allow-import gymnasium.envs.classic_control" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()

    run_dir = tmp_path / "run"  # typed on the command line, the id is the user's own choice
    assert main(["train", "--env", IMPORTING_ID, "--run-dir", str(run_dir), *QUICK]) == 0
    latest = str(run_dir / "checkpoints" / "latest")
    capsys.readouterr()
    for command in (["evaluate", latest, "--episodes", "1"], ["train", "--resume", str(run_dir)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("distdqn: error: env.id") and "would import module" in err and "\n" not in err
    assert main(["evaluate", latest, "--episodes", "1", "--allow-import", "gymnasium.envs.classic_control"]) == 0


@pytest.mark.parametrize("run_dir", ["a_file", "a_file/sub", "/dev/null", "/proc/distdqn-run"])
def test_a_run_dir_that_cannot_be_one_is_one_line(tmp_path: Path, capsys, monkeypatch, run_dir: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("mine")
    assert main(["train", "--run-dir", run_dir, "--total-steps", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: ") and run_dir in err and "\n" not in err
    assert (tmp_path / "a_file").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_argparse_errors_are_one_line_with_a_hint(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["evaluate", "somewhere", "--episodes", "abc"])
    err = capsys.readouterr().err.strip()
    assert exit_code.value.code == 2 and "\n" not in err
    assert err == "distdqn: error: argument --episodes: invalid int value: 'abc' (see distdqn evaluate --help)"


@pytest.mark.parametrize("kwargs", ["{layout_seed: 1, wall_fraction: 1.0}", "{layout_seed: 1, wall_fraction: 0.95}"])
def test_a_maze_without_a_path_is_refused_not_searched_forever(tmp_path: Path, capsys, kwargs: str):
    assert main(["train", "--env", "distdqn/Maze-v0", "--set", f"env.kwargs={kwargs}",
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert "wall_fraction" in capsys.readouterr().err


def test_resume_survives_what_a_crash_leaves_in_metrics(tmp_path: Path, capsys):
    """kill -9 during a write leaves a partial last line; a line may also lack env_steps."""
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *QUICK]) == 0
    metrics = run_dir / "metrics.jsonl"
    complete = metrics.read_text()
    metrics.write_text(complete + '{"updates": 3}\n{"env_steps": 9, "upda')
    assert main(["train", "--resume", str(run_dir), "--total-steps", "16"]) == 0
    lines = metrics.read_text().splitlines()
    assert lines[: len(complete.splitlines())] == complete.splitlines()
    assert all('"env_steps"' in line and line.endswith("}") for line in lines)
