"""The `distdqn` command: evaluation JSON and a bad input in a subprocess; the smoke runs and the
other refusals through `distdqn.cli.main` in this process, with file-descriptor capture (capfd), so
that stderr still has to be exactly the one line, whatever writes to it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    "--total-steps",
    "600",
    "--set",
    "algorithm.learning_starts=100",
    "--set",
    "evaluation.every_steps=300",
    "--set",
    "evaluation.episodes=2",
    "--set",
    "logging.tensorboard=false",
]


def distdqn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distdqn", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def here(*args: str, cwd: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`distdqn ARGS` in this process from `cwd`: its exit status and what it wrote to stderr."""
    from distdqn.cli import main

    monkeypatch.chdir(cwd)
    capfd.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exited:  # argparse's refusals
        code = exited.code if isinstance(exited.code, int) else 1
    return code, capfd.readouterr().err


def test_train_evaluate_and_resume(tmp_path: Path, capfd, monkeypatch):
    """Train and resume in this process (capfd reads what they print); evaluate's JSON by the
    command, so that nothing else reaches its stdout."""
    from distdqn.cli import main

    def train(*args: str) -> str:
        capfd.readouterr()
        code = main(["train", *args])
        out, err = capfd.readouterr()
        assert code == 0, err
        return out

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    done = train("--env", "CartPole-v1", "--run-dir", str(run_dir), "--seed", "3", *TINY)
    assert re.search(rf"run {run_dir}: 60[0-3] env steps", done), done
    assert (run_dir / "config.toml").read_text().count("seed = 3") == 1

    evaluated = distdqn("evaluate", str(run_dir / "checkpoints" / "best"), "--episodes", "3", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["episodes"] == 3 and len(report["returns"]) == 3
    assert report["return_mean"] == pytest.approx(sum(report["returns"]) / 3)
    assert report["return_std"] >= 0

    resumed = train("--resume", str(run_dir), "--total-steps", "900")
    assert re.search(r"90[0-3] env steps", resumed), resumed


def test_default_run_dir_is_under_runs(tmp_path: Path, capfd, monkeypatch):
    code, err = here("train", "--env", "distdqn/Maze-v0", *TINY, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("distdqn_Maze-v0-s0-")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--env", "NoSuchEnv-v0"], "cannot make env 'NoSuchEnv-v0'"),
        (["train", "--env", "MountainCarContinuous-v0"], "needs Discrete actions"),
        (["train", "--set", "algorithm.gama=0.9"], "unknown field 'algorithm.gama'"),
        (["train", "--set", "algorithm.gamma=2"], "algorithm.gamma: Input should be less than or equal to 1 (got 2)"),
        (["evaluate", "no/such/checkpoint"], "checkpoint not found: no/such/checkpoint"),
        (["train", "--resume", "no/such/run"], "checkpoint not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, capfd, monkeypatch, args, message):
    code, err = here(*args, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [f"distdqn: error: {err.strip().removeprefix('distdqn: error: ')}"]
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_bad_input_in_one_line_and_exit_2(tmp_path: Path):
    """One refusal of the previous test by the command itself: nothing else reaches its stderr."""
    done = distdqn("train", "--env", "NoSuchEnv-v0", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("distdqn: error: cannot make env 'NoSuchEnv-v0'"), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_is_one_line_exit_2_and_left_alone(tmp_path: Path, capfd, monkeypatch):
    run_dir = tmp_path / "run"
    assert here("train", "--run-dir", str(run_dir), *TINY, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)[0] == 0
    tensors = run_dir / "checkpoints" / "latest" / "tensors.safetensors"
    tensors.write_bytes(b"garbage")
    for args in (["evaluate", str(run_dir / "checkpoints" / "latest")], ["train", "--resume", str(run_dir)]):
        code, err = here(*args, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and "corrupt" in err
    assert tensors.read_bytes() == b"garbage"


def test_existing_run_dir_is_refused(tmp_path: Path, capfd, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    code, err = here("train", "--run-dir", str(run_dir), *TINY, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert code == 2 and "not empty" in err
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]


def test_an_empty_run_dir_on_the_command_line_is_refused(tmp_path: Path, monkeypatch, capsys):
    """argparse made `--run-dir ''` the current directory, and the run trained into it."""
    from distdqn.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["train", "--run-dir", "", "--total-steps", "100"])
    assert exited.value.code == 2 and "empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_k8s_does_not_import_a_module_a_config_file_names(tmp_path: Path):
    """Issue 18: `env.id = "pwn_mod:CartPole-v1"` in a config made `distdqn k8s --config` import
    pwn_mod (gymnasium imports `module` of an id `module:Env`) without --allow-import."""
    modules, marker = tmp_path / "modules", tmp_path / "imported"
    modules.mkdir()
    (modules / "pwn_mod.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n")
    config = tmp_path / "shared.toml"
    config.write_text('[env]\nid = "pwn_mod:CartPole-v1"\n')
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "distdqn", "k8s", "--config", str(config), "--image", "img:1"]
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}
    refused = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert (refused.returncode, refused.stdout) == (2, "") and not marker.exists()
    assert refused.stderr == (
        f"distdqn: error: env.id 'pwn_mod:CartPole-v1' from {config} would import module 'pwn_mod'; "
        "pass --allow-import pwn_mod if you trust it\n"
    )
    allowed = subprocess.run([*argv, "--allow-import", "pwn_mod"], capture_output=True, text=True, env=env, timeout=300)
    assert allowed.returncode == 0 and marker.exists(), allowed.stderr
