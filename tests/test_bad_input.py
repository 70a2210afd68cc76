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
