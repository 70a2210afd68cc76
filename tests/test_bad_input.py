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
