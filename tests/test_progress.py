"""Progress on stderr: a live tqdm line on a terminal, plain timed lines in a log, nothing when quiet."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distdqn.config import resolve_config
from distdqn.errors import ConfigError
from distdqn.run.metrics import Progress


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def assert_plain_lines(text: str) -> list[str]:
    assert text.endswith("\n")
    assert "\r" not in text and "\x1b" not in text
    return text.splitlines()


def test_lines_off_a_terminal_come_once_per_interval_and_at_close():
    stream, clock = Stream(tty=False), Clock()
    progress = Progress(10_000, 0, "auto", interval_s=30.0, stream=stream, clock=clock)
    clock.now += 10
    progress.advance(500)
    assert stream.getvalue() == ""
    clock.now += 22  # 32 s in
    progress.advance(1_100)
    assert stream.getvalue() == "env steps 1,600/10,000 (16%) | 50 steps/s | ETA 2:48\n"

    progress.show_eval(140.25)
    clock.now += 20
    progress.advance(1_000)
    assert stream.getvalue().count("\n") == 1  # 20 s since the last line
    clock.now += 10
    progress.advance(1_400)  # 4,000 steps, 2,400 of them in the 30 s since the last line
    clock.now += 8
    progress.close()

    lines = assert_plain_lines(stream.getvalue())
    assert lines[1:] == [
        "env steps 4,000/10,000 (40%) | 80 steps/s | eval return 140.2 | ETA 1:15",
        "env steps 4,000/10,000 (40%) | 57 steps/s | eval return 140.2 | elapsed 1:10",
    ]


def test_lines_count_a_resumed_run_from_where_it_resumed():
    stream, clock = Stream(tty=False), Clock()
    progress = Progress(20_000, 12_000, "lines", interval_s=0.0, stream=stream, clock=clock)
    clock.now += 3_700
    progress.advance(8_050)
    progress.close()
    lines = assert_plain_lines(stream.getvalue())
    assert lines == [
        "env steps 20,050/20,000 (100%) | 2 steps/s | ETA 0:00",
        "env steps 20,050/20,000 (100%) | 2 steps/s | elapsed 1:01:40",
    ]


def test_live_on_a_terminal_redraws_with_carriage_returns():
    stream = Stream(tty=True)
    progress = Progress(1_000, 0, "auto", stream=stream, clock=Clock())
    progress.advance(400)
    progress.show_eval(12.5)
    progress.close()
    assert "\r" in stream.getvalue() and "steps" in stream.getvalue()


def test_lines_can_be_forced_on_a_terminal():
    stream, clock = Stream(tty=True), Clock()
    progress = Progress(1_000, 0, "lines", interval_s=5.0, stream=stream, clock=clock)
    clock.now += 5
    progress.advance(400)
    progress.close()
    assert len(assert_plain_lines(stream.getvalue())) == 2


@pytest.mark.parametrize("tty", [True, False])
def test_none_writes_nothing(tty: bool):
    stream, clock = Stream(tty), Clock()
    progress = Progress(1_000, 0, "none", interval_s=0.0, stream=stream, clock=clock)
    clock.now += 60
    progress.advance(500)
    progress.show_eval(1.0)
    progress.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("value", "mode"), [("true", "auto"), ("false", "none"), ("lines", "lines")])
def test_progress_setting_keeps_the_old_booleans(value: str, mode: str):
    assert resolve_config(overrides=[f"logging.progress={value}"]).logging.progress == mode


def test_progress_setting_rejects_other_values():
    with pytest.raises(ConfigError, match="logging.progress"):
        resolve_config(overrides=["logging.progress=sometimes"])


def test_train_writes_plain_lines_to_a_pipe_and_nothing_when_quiet(tmp_path: Path, capfd: pytest.CaptureFixture):
    # short runs: what is checked is where the progress lines go, not what the run learns; the
    # shown one updates and evaluates (learning from 200 env steps, an evaluation every 300)
    def train(run: str, steps: int, *flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "distdqn", "train", "--env", "CartPole-v1", "--total-steps", str(steps)]
        command += ["--run-dir", str(tmp_path / run), "--set", "logging.tensorboard=false"]
        command += ["--set", "evaluation.episodes=2", "--set", "evaluation.every_steps=300"]
        command += ["--set", "algorithm.learning_starts=200", *flags]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)

    shown = train("shown", 600, "--set", "logging.progress_interval_s=0")
    assert shown.returncode == 0, shown.stderr
    assert "\r" not in shown.stderr and "\x1b" not in shown.stderr
    lines = [line for line in shown.stderr.splitlines() if line.startswith("env steps ")]
    assert len(lines) >= 2
    assert "elapsed" in lines[-1] and "eval return" in lines[-1]

    # --quiet in this process (a process of its own only started the interpreter again)
    from distdqn.cli import main

    capfd.readouterr()
    quiet_run = ["--total-steps", "300", "--run-dir", str(tmp_path / "quiet"), "--set", "logging.tensorboard=false"]
    assert main(["train", "--env", "CartPole-v1", *quiet_run, "--quiet"]) == 0
    quiet = capfd.readouterr()
    assert "env steps" not in quiet.err and "\r" not in quiet.err
    assert f"run {tmp_path / 'quiet'}: " in quiet.out
