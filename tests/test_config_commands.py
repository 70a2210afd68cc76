"""`distdqn config show` and `distdqn config presets`: the resolved config as TOML that loads back
to the same `Config`, and every packaged preset with the env ids that start from it."""

import re
from pathlib import Path

import pytest

from distdqn.cli import main
from distdqn.config import packaged_presets, preset_for, resolve_config
from distdqn.config.presets import FAMILIES


def _show(capsys, *args: str) -> str:
    assert main(["config", "show", *args]) == 0
    return capsys.readouterr().out


def test_show_prints_a_config_that_loads_back_to_the_same_config(tmp_path: Path, capsys):
    overrides = ["algorithm.lr=0.001", "env.kwargs={sutton_barto_reward: true}", "stop_return=400"]
    shown = _show(capsys, "--env", "CartPole-v1", *[arg for o in overrides for arg in ("--set", o)])
    written = tmp_path / "shown.toml"
    written.write_text(shown)
    assert resolve_config(None, written) == resolve_config("CartPole-v1", None, overrides)
    assert _show(capsys, "--config", str(written)) == shown


def test_show_applies_the_preset_of_a_family(capsys):
    shown = _show(capsys, "--env", "MinAtar/Breakout-v1")
    assert 'id = "MinAtar/Breakout-v1"' in shown
    assert 'torso = "minatar_cnn"' in shown  # from minatar.toml, not the defaults


def test_show_refuses_an_unknown_field_in_one_line(capsys):
    assert main(["config", "show", "--set", "algorithm.learning_rate=1e-3"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "algorithm.lr" in error, error


def test_presets_lists_every_packaged_file_with_its_ids_and_a_one_sentence_description(capsys):
    assert main(["config", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(path.name for path in (Path(__file__).parents[1] / "src/distdqn/presets").glob("*.toml"))
    listed = [line.split()[0] for line in lines[1:-1]]
    assert sorted(listed) == files
    assert any(line.startswith("atari.toml") and "ALE/<Game>-v5, <Game>NoFrameskip-v4" in line for line in lines)
    assert any(line.startswith("minatar.toml") and "MinAtar/<Game>-v1" in line for line in lines)
    for preset in packaged_presets():
        assert re.fullmatch(r"[^.]+(\.\d[^.]*)*\.", preset.description), preset  # one sentence, ending in a stop
        assert len(preset.description) <= 120, preset


@pytest.mark.parametrize("preset", packaged_presets(), ids=lambda preset: preset.name)
def test_each_listed_env_id_starts_from_its_preset(preset):
    """The ids column says what `preset_for` does: a family's ids (with a game filled in) and a
    single id both get the listed file."""
    data = preset_for(preset.env_ids.split(",")[0].replace("<Game>", "Breakout"))
    assert data and (preset.name in FAMILIES or data["env"]["id"] == preset.env_ids), preset


def test_train_help_points_to_both_config_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "distdqn config show" in shown and "distdqn config presets" in shown
