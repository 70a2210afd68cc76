"""An unknown config key is answered with the field it was probably meant to be, wherever it is
typed: `--set`, a config file, `tune --param` and `--start`; Stable-Baselines3's and CleanRL's
names map to distdqn's fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from distdqn.cli import main
from distdqn.config import COMMON_NAMES, field_paths, override_config, resolve_config, suggest_field
from distdqn.errors import ConfigError, UserError
from distdqn.tools.search_space import parse_param, parse_start


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("algorithm.learning_rate", "algorithm.lr?"),
        ("learning_rate", "algorithm.lr?"),
        ("algorithm.learning-rate", "algorithm.lr?"),
        ("buffer_size", "replay.capacity?"),
        ("replay.buffer_size", "replay.capacity?"),
        ("exploration_final_eps", "algorithm.eps_end?"),
        ("exploration_initial_eps", "algorithm.eps_start?"),
        ("exploration_fraction", "algorithm.eps_decay_steps? env steps, not a fraction of the run"),
        ("train_freq", "algorithm.replay_ratio? updates per env step: gradient_steps / train_freq"),
        ("gradient_steps", "algorithm.replay_ratio?"),
        ("target_update_interval", "algorithm.target_update_interval? counted in updates, not env steps"),
        ("target_network_frequency", "algorithm.target_update_interval?"),
        ("total_timesteps", "total_steps?"),
        ("batch_size", "algorithm.batch_size?"),
        ("gamma", "algorithm.gamma?"),
        ("tau", "algorithm.tau?"),
        ("learning_starts", "algorithm.learning_starts?"),
        ("algorithm.gama", "algorithm.gamma?"),
        ("replay.batch_size", "algorithm.batch_size?"),  # the right name in the wrong section
        ("algo.lr", "algorithm.lr?"),
        ("lr", "algorithm.lr?"),
        ("algorithm.learningrate", "algorithm.lr?"),
        ("algorithm.target_update", "algorithm.target_update_interval?"),
        ("placement.actor.num_cpu", "placement.actor.num_cpus?"),
        ("every_steps", "evaluation.every_steps, checkpoint.every_steps or logging.every_steps?"),
    ],
)
def test_set_suggests_the_field_meant(key: str, meant: str):
    with pytest.raises(ConfigError) as raised:
        resolve_config("CartPole-v1", overrides=[f"{key}=1"])
    message = str(raised.value)
    assert f" (did you mean {meant}" in message and message.endswith(")") and "\n" not in message, message
    assert f"unknown field {key.split('.')[0]!r}" in message or f"unknown field {key!r}" in message


def test_nothing_close_gets_no_suggestion():
    assert suggest_field("algorithm.zzzzzz") == ""
    with pytest.raises(ConfigError) as raised:
        resolve_config(overrides=["algorithm.zzzzzz=1"])
    assert str(raised.value) == "--set 'algorithm.zzzzzz': unknown field 'algorithm.zzzzzz'"


def test_every_common_name_maps_to_a_real_field():
    assert {path for path, _ in COMMON_NAMES.values()} <= set(field_paths())
    for name, (path, _) in COMMON_NAMES.items():
        assert suggest_field(name).startswith(f" (did you mean {path}?")


def test_resume_overrides_suggest_too():
    with pytest.raises(ConfigError, match=r"did you mean replay\.capacity\?"):
        override_config(resolve_config(), ["replay.buffer_size=10"], origin="--resume")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "run.toml",
            "[algorithm]\nlearning_rate = 1e-3\n",
            "algorithm.learning_rate: unknown field (did you mean algorithm.lr?)",
        ),
        ("run.toml", "buffer_size = 1000\n", "buffer_size: unknown field (did you mean replay.capacity?)"),
        ("run.yaml", "algorithm:\n  gama: 0.9\n", "algorithm.gama: unknown field (did you mean algorithm.gamma?)"),
        ("run.yaml", "placement:\n  actor:\n    num_cpu: 2\n", "(did you mean placement.actor.num_cpus?)"),
        (
            "run.toml",
            '[distdqn]\nnone = ["algorithm.lr_ends"]\n',
            "unknown field 'algorithm.lr_ends' (did you mean algorithm.lr_end?)",
        ),
        ("run.toml", "[distdqn]\nresolve = true\n", "distdqn.resolve: unknown key (did you mean distdqn.resolved?)"),
    ],
)
def test_files_suggest_the_field_meant(tmp_path: Path, name: str, text: str, message: str):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, path)
    assert str(raised.value).startswith(f"{path}: ") and str(raised.value).endswith(message), str(raised.value)


def test_tune_param_and_start_suggest_the_field_meant():
    with pytest.raises(UserError) as raised:
        parse_param("algorithm.learning_rate=loguniform(1e-4,1e-2)")
    assert str(raised.value) == "--param algorithm.learning_rate: unknown config field (did you mean algorithm.lr?)"
    with pytest.raises(UserError, match=r"--param algorithm: unknown config field"):
        parse_param("algorithm=choice(1,2)")  # a section is no field
    with pytest.raises(UserError) as raised:
        parse_start("algorithm.lr=1e-3;buffer_size=1000")
    assert str(raised.value) == "--start buffer_size: unknown config field (did you mean replay.capacity?)"


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--set", "algorithm.learning_rate=1"],
        ["tune", "--param", "algorithm.learning_rate=loguniform(1e-4,1e-2)"],
    ],
)
def test_the_cli_answers_in_one_line_with_exit_2(tmp_path: Path, capsys, args: list[str]):
    code = main([*args, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("distdqn: error: ") and err.rstrip().endswith("did you mean algorithm.lr?)"), err
    assert not (tmp_path / "run").exists()
