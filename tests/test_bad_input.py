"""Bad input, thrown as a hostile but realistic user would: every case is one line
`distdqn: error: ...` naming the bad value, exit code 2, no traceback, nothing written."""

import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import distdqn.storage.checkpoint as checkpoint_module
import distdqn.storage.run_files as run_files
from distdqn.cli import main
from distdqn.config import config_to_toml, resolve_config
from distdqn.run.metrics import TIMING_KEYS
from distdqn.storage.array_files import write_array
from distdqn.storage.checkpoint import load_checkpoint, save_checkpoint

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
    (
        ("algorithm.batch_size=99999999999999999999999", "algorithm.learning_starts=100"),
        "batch_size: must lie within int64",
    ),
    ("algorithm.batch_size=60000", "algorithm.batch_size=60000 is more than replay.capacity=50000"),
    ("evaluation.every_steps=99999999999999999999999", "evaluation.every_steps: must lie within int64"),
    (f"placement.num_actors={2**62}", "replay.capacity=50000 leaves 0 slots per environment"),
    ("placement.num_shards=5", "placement.num_shards=5 is more than the 4 actor environments"),
    (f"network.hidden_sizes=[{2**62}]", "network.hidden_sizes: a layer of 4611686018427387904 units"),
    ("network.hidden_sizes=[100000, 1000000]", "layers of 100000 and 1000000 units need 1e+11 weights"),
    (f"placement.torch_threads={2**62}", "placement.torch_threads"),
    ("env.kwargs={a: &x [1, 2], b: *x}", "--set 'env.kwargs': the alias *x is refused"),
    ("env.kwargs={a: " + "[" * 5000 + "]" * 5000 + "}", "nest deeper than 32"),
    ("replay.capacity=1000000000000", "replay.capacity=1000000000000 needs"),
    ("env.num_envs=0", "env.num_envs"),
    ("algorithm.n_step=0", "algorithm.n_step"),
    ("algorithm.learning_rate=1e-3", "did you mean algorithm.lr?"),
    ("buffer_size=100000", "did you mean replay.capacity?"),
    ("exploration_final_eps=0.01", "did you mean algorithm.eps_end?"),
    ("train_freq=4", "did you mean algorithm.replay_ratio?"),
    (("placement.runtime=ray", "placement.num_learners=3", "placement.head_shards=2"), "head_shards=2"),
    (("placement.runtime=ray", "placement.num_learners=3", "placement.head_shards=3"), "head of 2 actions"),
    (
        (
            "placement.runtime=ray",
            "placement.num_learners=2",
            "placement.head_shards=2",
            "placement.learner_compile=true",
        ),
        "learner_compile",
    ),
    ("network.action_features=true", "needs an action space that publishes item features"),
    (
        (
            "placement.runtime=ray",
            "placement.num_learners=2",
            "placement.head_shards=2",
            "network.action_features=true",
        ),
        "network.action_features=true needs placement.head_shards=1",
    ),
    ("network.action_embedding_size=0", "network.action_embedding_size"),
]


@pytest.mark.parametrize(("setting", "named"), BAD_SETTINGS)
def test_bad_setting_is_one_line_and_writes_nothing(tmp_path: Path, capsys, setting: str | tuple, named: str):
    run_dir = tmp_path / "run"
    sets = [item for one in ((setting,) if isinstance(setting, str) else setting) for item in ("--set", one)]
    code = main(["train", *sets, "--total-steps", "10", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("distdqn: error: ") and "\n" not in err and named in err, err
    assert not run_dir.exists()


def test_a_huge_bad_value_is_echoed_as_a_short_prefix(tmp_path: Path, capsys):
    code = main(["train", "--set", "algorithm.lr=" + "9" * 5000, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err) < 300, err


IMPORTING_ID = "gymnasium.envs.classic_control:CartPole-v1"  # gymnasium imports the module part first
QUICK = [
    "--total-steps",
    "8",
    "--set",
    "logging.progress=false",
    "--set",
    "logging.tensorboard=false",
    "--set",
    "algorithm.learning_starts=0",
    "--set",
    "evaluation.episodes=1",
]


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


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real module on sys.path that, once imported, writes a marker file: the code a shared
    config's or run's author would run. Yields (module name, marker path)."""
    name = f"distdqn_marker_{uuid.uuid4().hex[:12]}"
    modules, marker = tmp_path / "modules", tmp_path / "imported"
    modules.mkdir()
    (modules / f"{name}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n")
    monkeypatch.syspath_prepend(str(modules))
    yield name, marker
    sys.modules.pop(name, None)


def _files_naming(tmp_path: Path, env_id: str) -> dict[str, Path]:
    """A config file, and a run (config.toml and checkpoints/latest), whose env id is `env_id`."""
    config = resolve_config("CartPole-v1", None, ["logging.progress=none", "logging.tensorboard=false"])
    config = config.model_copy(update={"env": config.env.model_copy(update={"id": env_id})})
    files = tmp_path / "files"
    (files / "run").mkdir(parents=True)
    (files / "shared.toml").write_text(f'[env]\nid = "{env_id}"\n')
    (files / "run" / "config.toml").write_text(config_to_toml(config))
    save_checkpoint(files / "run" / "checkpoints", "latest", config, {}, {})
    return {"config": files / "shared.toml", "run": files / "run", "latest": files / "run" / "checkpoints" / "latest"}


FROM_A_FILE = {
    "train": ["train", "--config", "{config}", "--run-dir", "out"],
    "train --resume": ["train", "--resume", "{run}"],
    "evaluate": ["evaluate", "{latest}"],
    "evaluate a run": ["evaluate", "{run}", "--latest"],
    "play": ["play", "{latest}", "--gif", "out.gif"],
    "plan": ["plan", "--config", "{config}"],
    "tune": ["tune", "--config", "{config}", "--param", "algorithm.lr=uniform(1e-4,1e-3)", "--run-dir", "out"],
    "k8s": ["k8s", "--config", "{config}", "--image", "img:1"],
}


@pytest.mark.parametrize("command", list(FROM_A_FILE))
def test_no_command_imports_a_module_named_by_a_file_without_allow_import(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, marker_module: tuple[str, Path], command: str
):
    """Issue 18: `k8s --config` imported `module` of an env id `module:CartPole-v1` read from the
    file, and `tune` crashed; every command that makes an env now applies one rule first."""
    module, marker = marker_module
    files = _files_naming(tmp_path, f"{module}:CartPole-v1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [arg.format(**{key: str(path) for key, path in files.items()}) for arg in FROM_A_FILE[command]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"distdqn: error: env.id '{module}:CartPole-v1' from ")
    assert f"would import module '{module}'; pass --allow-import {module} if you trust it" in captured.err
    assert not marker.exists() and list(work.iterdir()) == []


def test_allow_import_and_a_typed_id_let_the_module_be_imported(tmp_path: Path, capsys, marker_module):
    module, marker = marker_module
    files = _files_naming(tmp_path, f"{module}:CartPole-v1")
    k8s = ["k8s", "--image", "img:1", "--token", "external"]
    assert main([*k8s, "--config", str(files["config"]), "--allow-import", module]) == 0
    assert marker.exists()  # k8s makes the env to read its spaces
    job = list(yaml.safe_load_all(capsys.readouterr().out))[-1]
    # in the pod the id comes from the ConfigMap: the consent given here goes with it
    assert job["spec"]["entrypoint"].endswith(f"--run-dir /tmp/run --allow-import {module}")
    marker.unlink()
    sys.modules.pop(module)
    assert main([*k8s, "--env", f"{module}:CartPole-v1"]) == 0 and marker.exists()
    capsys.readouterr()
    assert main(["plan", "--set", f"env.id={module}:CartPole-v1"]) == 0  # typed: the user's choice
    assert main(["plan", "--config", str(files["config"]), "--set", f"env.id='{module}:CartPole-v1'"]) == 0


def test_tune_takes_a_typed_module_id_and_says_in_one_line_when_it_cannot_be_made(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, marker_module
):
    """`tune --env module:Name` was an AttributeError traceback (tune had no --allow-import)."""
    import distdqn.tools.tuning

    module, marker = marker_module
    bases = []

    def tune(base, options):
        bases.append(base)
        return distdqn.tools.tuning.TuneSummary("t_00000", 1.0, {"algorithm.lr": 1e-3}, 1)

    monkeypatch.setattr(distdqn.tools.tuning, "tune", tune)
    monkeypatch.chdir(tmp_path)
    search = ["--param", "algorithm.lr=uniform(1e-4,1e-3)", "--scheduler", "random"]
    assert main(["tune", "--env", f"{module}:CartPole-v1", *search, "--run-dir", "out"]) == 0
    assert [base.env.id for base in bases] == [f"{module}:CartPole-v1"] and marker.exists()
    capsys.readouterr()

    # a module no trial could import: one line before Ray starts, for every scheduler
    assert main(["tune", "--env", "distdqn_no_such_module:CartPole-v1", *search, "--run-dir", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot make env 'distdqn_no_such_module:CartPole-v1'" in err
    assert len(bases) == 1 and not (tmp_path / "missing").exists()


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
    assert (
        main(["train", "--env", "distdqn/Maze-v0", "--set", f"env.kwargs={kwargs}", "--run-dir", str(tmp_path / "run")])
        == 2
    )
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert (
        main(["train", "--run-dir", str(run_dir), *QUICK, "--total-steps", "64", "--set", "network.hidden_sizes=[16]"])
        == 0
    )
    assert "optimizer.0.exp_avg" in load_checkpoint(run_dir / "checkpoints" / "latest").tensors  # it learned
    return run_dir


def _damaged_copy(run_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run whose latest checkpoint `edit` changes; the manifest is rewritten so that
    only the content check can catch it (as if the run's author had crafted it)."""
    import hashlib
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    version = (copy / "checkpoints" / "latest").resolve()
    edit(version)
    files = {
        name: {
            "sha256": hashlib.sha256((version / name).read_bytes()).hexdigest(),
            "size": (version / name).stat().st_size,
        }
        for name in json.loads((version / "manifest.json").read_text())["files"]
    }
    (version / "manifest.json").write_text(json.dumps({"files": files}))
    return copy


def _edit_state(change):
    def edit(version: Path) -> None:
        import json

        state = json.loads((version / "state.json").read_text())
        change(state)
        (version / "state.json").write_text(json.dumps(state))

    return edit


def _edit_tensors(change):
    def edit(version: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(version / "tensors.safetensors")
        change(tensors)
        save_file(tensors, version / "tensors.safetensors")

    return edit


def _edit_resume(change):
    def edit(version: Path) -> None:
        change(version / "resume", json.loads((version / "resume.json").read_text()), version / "resume.json")

    return edit


def _replace_resume_array(part: str, array: np.ndarray):
    def change(directory: Path, saved: dict, path: Path) -> None:
        target = next(directory.glob(f"*{part}*"))
        target.unlink()
        write_array(target, array)

    return _edit_resume(change)


def _flip_a_byte(directory: Path, saved: dict, path: Path) -> None:
    target = next(directory.glob("*observations*"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _point_outside(directory: Path, saved: dict, path: Path) -> None:
    name = next(iter(saved["arrays"]))
    saved["arrays"][name] = "resume/../tensors.safetensors"
    path.write_text(json.dumps(saved))


def _edit_tree(change):
    def edit(directory: Path, saved: dict, path: Path) -> None:
        change(saved["tree"])
        path.write_text(json.dumps(saved))

    return _edit_resume(edit)


def _cartpole_layer(tree: dict) -> dict:
    """The innermost layer (CartPoleEnv) of the first env of the first actor."""
    return tree["actors"][0]["stream"]["envs"]["envs"][0][-1]


def _env_rng_state(tree: dict) -> dict:
    """The {state, inc} of the first env's PCG64, as env_state encodes a dict: {"dict": [[k, v]]}."""
    generator = _cartpole_layer(tree)["attributes"]["_np_random"]
    outer = dict(generator["state"]["dict"])
    return outer["state"]["dict"]


def _set_in_pairs(pairs: list, key: str, value: object) -> None:
    for pair in pairs:
        if pair[0] == key:
            pair[1] = value


def _swap_env_class(tree: dict) -> None:
    _cartpole_layer(tree)["class"] = "gymnasium.envs.classic_control.acrobot.AcrobotEnv"


def _set_method(tree: dict) -> None:
    _cartpole_layer(tree)["attributes"]["step"] = 1


DAMAGES = {
    "counters of the wrong type": (_edit_state(lambda s: s["counters"].update(env_steps="many")), "env_steps"),
    "counters missing": (_edit_state(lambda s: s.pop("counters")), "counters"),
    "an unknown counter": (_edit_state(lambda s: s["counters"].update(surprise=1)), "surprise"),
    "a bad learner section": (_edit_state(lambda s: s.update(learner=[])), "learner"),
    "a tensor of the wrong shape": (
        _edit_tensors(lambda t: t.update({"online.head.weight": t["online.head.weight"][:1]})),
        "online.head.weight",
    ),
    "a tensor missing": (_edit_tensors(lambda t: t.pop("target.head.bias")), "target.head.bias"),
    "an Adam moment of the wrong shape": (
        _edit_tensors(lambda t: t.update({"optimizer.0.exp_avg": t["optimizer.1.exp_avg"].clone()})),
        "optimizer.0.exp_avg",
    ),
    "a NaN weight": (_edit_tensors(lambda t: t["online.head.bias"].fill_(float("nan"))), "NaN"),
    "a replay array of the wrong shape": (_replace_resume_array("positions", np.zeros(3, np.int64)), "positions"),
    "a replay array of the wrong dtype": (
        _replace_resume_array("sampleable", np.zeros(4, np.float64)),
        "sampleable",
    ),
    "a damaged replay file": (_edit_resume(_flip_a_byte), "observations"),
    "a replay file outside resume/": (_edit_resume(_point_outside), "outside resume/"),
    "a negative env step count": (_edit_state(lambda s: s["counters"].update(env_steps=-5)), "env_steps"),
    "a fractional update count": (_edit_state(lambda s: s["counters"].update(updates=3.5)), "updates"),
    "a negative restart count": (_edit_state(lambda s: s["counters"].update(restarts={"actor": -1})), "restarts"),
    "a negative wall time": (_edit_state(lambda s: s["counters"].update(wall_s=-1.0)), "wall_s"),
    "int64 weights": (
        _edit_tensors(lambda t: t.update({k: v.to(torch.int64) for k, v in t.items() if k.startswith("online.")})),
        "int64",
    ),
    "float64 weights": (
        _edit_tensors(lambda t: t.update({k: v.double() for k, v in t.items() if k.startswith("target.")})),
        "float64",
    ),
    "a swapped env class": (_edit_tree(_swap_env_class), "AcrobotEnv"),
    "an env attribute named like a method": (_edit_tree(_set_method), "'step'"),
    "an env RNG state with a huge integer": (
        _edit_tree(lambda tree: _set_in_pairs(_env_rng_state(tree), "state", 2**1000)),
        "OverflowError",
    ),
    "a sampling RNG state with a huge integer": (
        _edit_tree(lambda tree: tree["loop"]["plan_rng"]["state"].update(state=2**1000)),
        "resume.json",
    ),
}


def _snapshot(directory: Path) -> dict[str, str]:
    """Every entry under `directory`, links not followed: a file's SHA-256, a link's target."""
    entries = {}
    for root, directories, files in os.walk(directory):
        for name in directories + files:
            path = Path(root) / name
            relative = str(path.relative_to(directory))
            if path.is_symlink():
                entries[relative] = "-> " + os.readlink(path)
            elif path.is_file():
                entries[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[relative] = "directory"
    return entries


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_refused_on_resume_in_one_line(finished_run: Path, tmp_path: Path, capsys, damage: str):
    edit, named = DAMAGES[damage]
    copy = _damaged_copy(finished_run, tmp_path, edit)
    before = _snapshot(copy)
    # TensorBoard on: a refusal must not leave an event file (nor placement.json, nor a cut metrics.jsonl)
    assert main(["train", "--resume", str(copy), "--total-steps", "100", "--set", "logging.tensorboard=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: checkpoint") and named in err and "\n" not in err, err
    assert _snapshot(copy) == before


def test_evaluate_refuses_integer_weights_in_one_line(finished_run: Path, tmp_path: Path, capsys):
    """int64 weights were cast into the float network and scored (68.0)."""
    to_int = _edit_tensors(lambda t: t.update({k: v.to(torch.int64) for k, v in t.items() if k.startswith("online.")}))
    copy = _damaged_copy(finished_run, tmp_path, to_int)
    assert main(["evaluate", str(copy / "checkpoints" / "latest"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: checkpoint") and "torch.int64, not floating point" in err, err


def test_resuming_with_another_network_is_refused_in_one_line(finished_run: Path, capsys):
    assert main(["train", "--resume", str(finished_run), "--set", "network.hidden_sizes=[32]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not fit the config's network" in err and "\n" not in err


def test_a_run_that_diverges_stops_in_one_line_and_keeps_its_last_finite_checkpoint(
    tmp_path: Path, capsys, counter_id: str
):
    """A reward that overflows float32 (any loss going non-finite) used to train on, exit 0 and
    save NaN weights as `latest` and `best`."""
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "--env",
            counter_id,
            "--run-dir",
            str(run_dir),
            "--total-steps",
            "2000",
            "--set",
            "env.kwargs={length: 10, reward_scale: 1.0e+39}",
            "--set",
            "algorithm.learning_starts=50",
            "--set",
            "checkpoint.every_steps=40",
            "--set",
            "evaluation.every_steps=40",
            "--set",
            "logging.progress=false",
            "--set",
            "logging.tensorboard=false",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("distdqn: error: training diverged at env step") and "\n" not in err, err
    latest = load_checkpoint(run_dir / "checkpoints" / "latest")  # finite, or it would not load
    assert f"checkpoints/latest keeps env step {latest.state['counters']['env_steps']}" in err
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda constant: pytest.fail(f"{constant} is not JSON"))


def test_best_never_gets_worse_across_a_resume(finished_run: Path, tmp_path: Path, capsys):
    """Killed after a new `best` but before the next `latest`, a resumed run used to overwrite
    `best` (367.8) with a worse one (341.7): its counters knew only the older, lower best."""
    copy = _damaged_copy(finished_run, tmp_path, _edit_state(lambda s: s["counters"].update(best_eval_return=-1.0)))
    best = copy / "checkpoints" / "best"
    recorded = load_checkpoint(best).state["evaluation"]["eval_return_mean"]
    assert main(["train", "--resume", str(copy), "--total-steps", "400", "--set", "evaluation.every_steps=40"]) == 0
    assert load_checkpoint(best).state["evaluation"]["eval_return_mean"] >= recorded
    resumed_evaluations = [
        json.loads(line)["eval_return_mean"]
        for line in (copy / "metrics.jsonl").read_text().splitlines()[-10:]
        if "eval_return_mean" in line
    ]
    assert resumed_evaluations and min(resumed_evaluations) < recorded  # a worse score came, and was not kept


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("binary.toml", b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
        ("env-number.toml", b"env = 3\n", "env must be a table"),
        ("env-number.yaml", b"env: 3\n", "env must be a table"),
        ("id-number.toml", b"[env]\nid = 5\n", "env.id must be a string"),
        ("list.yaml", b"- 1\n- 2\n", "table of sections"),
        (
            "anchors.yaml",
            b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nenv:\n  kwargs: [*c, *c, *c, *c, *c, *c]\n",
            "line 2: the alias *a is refused",
        ),
        ("merge-key.yaml", b"base: &base {lr: 0.01, nope: 1}\nalgorithm:\n  <<: *base\n", "line 3: the alias *base"),
        ("deep.yaml", b"env:\n  kwargs: {a: " + b"[" * 5000 + b"]" * 5000 + b"}\n", "nest deeper than 32"),
        ("deep.toml", b"[env.kwargs]\na = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nest deeper than 32"),
        ("deep-40.toml", b"[env.kwargs]\na = " + b"[" * 40 + b"]" * 40 + b"\n", "nest deeper than 32"),
        ("digits.toml", b"seed = " + b"9" * 5000 + b"\n", "4300 digits"),
        ("digits.yaml", b"seed: " + b"9" * 5000 + b"\n", "4300 digits"),
        ("huge.toml", b"# a comment\n" * 100_000, "larger than 1 MiB"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path: Path, capsys, name: str, content: bytes, named: str):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: ") and named in err and "\n" not in err and len(err) < 400, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--episodes", "100000000"], "--episodes"),
        (["--episodes", "0"], "--episodes"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**70)], "--seed"),
    ],
)
def test_evaluate_refuses_what_it_cannot_run(finished_run: Path, capsys, flags: list[str], named: str):
    assert main(["evaluate", str(finished_run / "checkpoints" / "latest"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: ") and named in err and "\n" not in err


def test_evaluate_plays_many_episodes_in_batches_and_replays_a_recorded_evaluation(finished_run: Path, capsys):
    best = load_checkpoint(finished_run / "checkpoints" / "best").state["evaluation"]
    latest = str(finished_run / "checkpoints" / "best")
    assert main(["evaluate", latest, "--episodes", "150", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 150
    assert (
        main(["evaluate", latest, "--episodes", str(best["eval_episodes"]), "--seed", str(best["eval_seed"]), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["return_mean"] == best["eval_return_mean"]


def test_an_unreachable_cluster_is_one_line_within_seconds_and_leaves_no_run_behind(tmp_path: Path, capsys):
    """`--address 127.0.0.1:1` retried for 10 minutes printing Ray's connection log, and left a
    config.toml that made the same run directory refuse to start again."""
    import time

    started = time.monotonic()
    code = main(["train", "--runtime", "ray", "--address", "127.0.0.1:1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "distdqn: error: cannot reach the Ray cluster at '127.0.0.1:1': Connection refused"
    assert time.monotonic() - started < 15 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["metrics.jsonl", "placement.json", "checkpoints"])
def test_a_run_directory_whose_files_link_outside_it_is_refused(finished_run: Path, tmp_path: Path, capsys, name: str):
    """A downloaded run whose `metrics.jsonl` links to ~/.bashrc must not make us append to it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    outside = tmp_path / "outside"
    shutil.move(str(copy / name), str(outside))
    (copy / name).symlink_to(outside)
    before = sorted((p.name, p.stat().st_size) for p in [outside, *outside.rglob("*")] if p.is_file())
    assert main(["train", "--resume", str(copy), "--total-steps", "200"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{name} is a link to" in err and "\n" not in err
    assert sorted((p.name, p.stat().st_size) for p in [outside, *outside.rglob("*")] if p.is_file()) == before


def _past_latest(run_dir: Path) -> None:
    """A line logged after `latest`, as a crash leaves it: a resume must cut metrics.jsonl."""
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"env_steps": 99999, "updates": 1, "wall_s": 1.0}) + "\n")


@pytest.mark.parametrize(
    "name",
    ["metrics.jsonl.tmp", "placement.json.tmp", "config.toml.tmp", ".lock", ".lock.tmp", "tb/events.out.tfevents.1"],
)
def test_a_run_file_that_links_outside_is_refused_before_anything_is_written(
    finished_run: Path, tmp_path: Path, capsys, name: str
):
    """`metrics.jsonl.tmp` linked to a file elsewhere, with a line past `latest` to cut: the
    resume wrote the metrics over that file, renamed the link to metrics.jsonl and appended there."""
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    _past_latest(copy)
    outside = tmp_path / "outside"
    outside.write_text("not the run's\n")
    (copy / name).parent.mkdir(exist_ok=True)
    (copy / name).unlink(missing_ok=True)
    (copy / name).symlink_to(outside)
    before = _snapshot(copy)
    assert main(["train", "--resume", str(copy), "--total-steps", "200", "--set", "logging.tensorboard=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: ") and f"{name} is a link to {outside}" in err and "\n" not in err, err
    assert outside.read_text() == "not the run's\n" and _snapshot(copy) == before


@pytest.mark.parametrize("name", ["metrics.jsonl", "placement.json", ".lock"])
@pytest.mark.parametrize("cut", [False, True], ids=["append", "cut"])
def test_a_hard_link_to_a_file_outside_is_never_written_through(
    finished_run: Path, tmp_path: Path, capsys, name: str, cut: bool
):
    """`metrics.jsonl` and `placement.json` hard-linked to files elsewhere were appended to and
    overwritten: a run's file with other names is replaced by one of its own, and the other
    names keep what they held."""
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    if cut:
        _past_latest(copy)
    outside = tmp_path / "outside"
    shutil.copyfile(copy / name, outside)
    held = outside.read_bytes()
    (copy / name).unlink()
    os.link(outside, copy / name)
    assert main(["train", "--resume", str(copy), "--total-steps", "200"]) == 0, capsys.readouterr().err
    assert outside.read_bytes() == held and os.stat(outside).st_nlink == 1
    assert os.stat(copy / name).st_nlink == 1
    steps = [json.loads(line)["env_steps"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and 200 <= steps[-1] < 99999


def _break_latest(how: str):
    def edit(checkpoints: Path) -> None:
        (checkpoints / "latest").unlink()
        if how == "dangling":
            (checkpoints / "latest").symlink_to(".latest-gone")
        elif how == "looping":
            (checkpoints / "latest").symlink_to("latest")

    return edit


@pytest.mark.parametrize("how", ["dangling", "looping", "missing"])
def test_a_broken_latest_resumes_from_the_newest_version_that_verifies(
    finished_run: Path, tmp_path: Path, capsys, how: str
):
    """A dangling or looping `latest` made `--resume` start over at step 0, delete the intact
    versions and append a second run to metrics.jsonl, exiting 0."""
    copy = _damaged_copy(finished_run, tmp_path, _edit_state(lambda s: s["counters"].update(episodes=1000)))
    checkpoints = copy / "checkpoints"
    version = (checkpoints / "latest").resolve()
    saved = load_checkpoint(checkpoints / "latest").state
    best = load_checkpoint(checkpoints / "best").state["evaluation"]["eval_return_mean"]
    _break_latest(how)(checkpoints)
    older = checkpoints / ".latest-000000000000"  # an older complete version: not the one to resume from
    shutil.copytree(version, older)
    state = json.loads((older / "state.json").read_text())
    state["counters"]["env_steps"] = 8
    (older / "state.json").write_text(json.dumps(state))  # no longer matches its manifest: never verifies
    logged = (copy / "metrics.jsonl").read_text().splitlines()
    assert main(["train", "--resume", str(copy), "--total-steps", "200"]) == 0
    err = capsys.readouterr().err.strip()
    assert f"resuming from {version.name} (env step {saved['counters']['env_steps']})" in err, err
    resumed = load_checkpoint(checkpoints / "latest").state
    assert resumed["counters"]["env_steps"] >= 200
    assert resumed["counters"]["episodes"] > 1000  # counted on from the version it resumed from
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["env_steps"] for line in lines]
    assert lines[: len(logged)] == logged and steps == sorted(steps)  # one run: nothing started over
    assert load_checkpoint(checkpoints / "best").state["evaluation"]["eval_return_mean"] >= best


def test_a_broken_latest_without_a_version_that_verifies_is_refused_and_changes_nothing(
    finished_run: Path, tmp_path: Path, capsys
):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    checkpoints = copy / "checkpoints"
    version = (checkpoints / "latest").resolve()
    with (version / "state.json").open("a") as state:
        state.write(" ")
    _break_latest("dangling")(checkpoints)
    before = _snapshot(copy)
    assert main(["train", "--resume", str(copy), "--total-steps", "200"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: cannot resume: ") and "is a broken link" in err and "\n" not in err, err
    assert "state.json is corrupt" in err and _snapshot(copy) == before


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.parametrize("best", [False, True], ids=["nothing else", "best written"])
def test_a_run_killed_while_writing_its_first_checkpoint_starts_over_as_one_run(
    finished_run: Path, tmp_path: Path, capsys, best: bool
):
    """`kill -9` during the first checkpoint's write leaves a version without its manifest: the
    restart kept the killed run's metrics lines and appended its own after them."""
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    checkpoints = copy / "checkpoints"
    version = (checkpoints / "latest").resolve()
    recorded = load_checkpoint(checkpoints / "best").state["evaluation"]["eval_return_mean"]
    (checkpoints / "latest").unlink()
    (version / "manifest.json").unlink()  # what a kill before the manifest leaves
    if not best:
        shutil.rmtree((checkpoints / "best").resolve())
        (checkpoints / "best").unlink()
    killed = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert main(["train", "--resume", str(copy), "--total-steps", "64"]) == 0, capsys.readouterr().err
    restarted = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert _without_timings(restarted) == _without_timings(killed)  # the same seed, begun afresh: one run
    assert load_checkpoint(checkpoints / "latest").state["counters"]["env_steps"] >= 64
    if best:  # its score stands: only a better one replaces it
        assert load_checkpoint(checkpoints / "best").state["evaluation"]["eval_return_mean"] >= recorded


def test_a_tensorboard_directory_that_is_a_file_is_one_line(finished_run: Path, tmp_path: Path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)
    (copy / "tb").write_text("a file")
    before = _snapshot(copy)
    assert main(["train", "--resume", str(copy), "--total-steps", "200", "--set", "logging.tensorboard=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"distdqn: error: {copy / 'tb'} is not a directory" and _snapshot(copy) == before


def _fill_the_disk_after(calls: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint writes fail as on a full disk once `calls` tensors files have been written."""
    real = checkpoint_module.save_file
    written = []

    def save_file(tensors: dict, path: Path) -> None:
        written.append(path)
        if len(written) > calls:
            Path(path).write_bytes(b"\0" * 100)  # what a write cut short leaves
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(tensors, path)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)


def test_a_full_disk_stops_training_in_one_line_with_latest_intact(tmp_path: Path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    _fill_the_disk_after(2, monkeypatch)  # the first `latest` and the first `best`
    code = main(
        ["train", "--run-dir", str(run_dir), "--total-steps", "3000", "--set", "checkpoint.every_steps=1000"]
        + ["--set", "evaluation.every_steps=1000", "--set", "logging.progress=false"]
        + ["--set", "logging.tensorboard=false", "--set", "checkpoint.keep_best=false"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("distdqn: error: the disk is full") and "\n" not in err, err
    latest = load_checkpoint(run_dir / "checkpoints" / "latest")
    assert f"checkpoints/latest keeps env step {latest.state['counters']['env_steps']}" in err
    assert not [p for p in (run_dir / "checkpoints").iterdir() if not (p / "manifest.json").is_file()]


def test_a_full_disk_while_resuming_is_one_line(tmp_path: Path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    settings = ["--set", "logging.progress=false", "--set", "logging.tensorboard=false"]
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "1000", *settings]) == 0
    (run_dir / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text() + '{"env_steps": 99999}\n')

    def full(path: Path) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(run_files, "_open_new", full)  # every file a run writes is a new one
    capsys.readouterr()
    code = main(["train", "--resume", str(run_dir), "--total-steps", "2000"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("distdqn: error: the disk is full") and "\n" not in err, err
    assert load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"] >= 1000


def test_a_resume_that_changes_the_layout_says_so_and_starts_with_an_empty_replay(
    finished_run: Path, tmp_path: Path, capsys
):
    copy = _damaged_copy(finished_run, tmp_path, lambda version: None)
    assert main(["train", "--resume", str(copy), "--total-steps", "200", "--set", "placement.num_shards=2"]) == 0
    err = capsys.readouterr().err.strip()
    assert "resuming with an empty replay" in err and len(err.splitlines()) == 1, err
    assert load_checkpoint(copy / "checkpoints" / "latest").state["counters"]["env_steps"] >= 200


@pytest.fixture
def cpu_only_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as a CPU-only torch build sees it, whatever the test machine has."""
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--total-steps", "10"],
        ["train", "--resume", "RUN"],
        ["plan"],
        ["plan", "--runtime", "ray"],
        ["tune", "--param", "algorithm.lr=loguniform(1e-4,1e-2)", "--total-steps", "100"],
    ],
)
def test_a_cuda_learner_on_a_machine_without_cuda_is_one_line_and_writes_nothing(
    finished_run: Path, tmp_path: Path, capsys, monkeypatch, cpu_only_torch: None, command: list[str]
):
    """It was torch's 30-line traceback (exit 1) from inside the learner, after the run directory
    was made, so that the same command without the bad device was then refused."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = sorted((p.name, p.stat().st_size) for p in finished_run.rglob("*") if p.is_file())
    command = [str(finished_run) if arg == "RUN" else arg for arg in command]
    if command[0] != "plan" and "--resume" not in command:
        command += ["--run-dir", str(tmp_path / "run")]
    assert main([*command, "--set", "placement.device=cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "distdqn: error: placement.device='cuda' needs a CUDA device; this machine has none "
        f"(torch {__import__('torch').__version__} is built without CUDA); use cpu or auto"
    )
    assert list(tmp_path.iterdir()) == []
    assert sorted((p.name, p.stat().st_size) for p in finished_run.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--set", "placement.num_learners=2", "--run-dir", "RUN_DIR"],
        ["train", "--resume", "FINISHED"],
        ["plan", "--set", "placement.num_learners=2"],
    ],
)
def test_an_address_implies_the_ray_runtime(finished_run: Path, tmp_path: Path, capsys, command: list[str]):
    """`--address` without `--runtime ray` was refused by the inline runtime's own check
    ("num_learners=2 needs the ray runtime; inline has 1"), or ignored on --resume; now it joins
    that cluster (here one that is not there)."""
    command = [
        str(tmp_path / "run") if a == "RUN_DIR" else str(finished_run) if a == "FINISHED" else a for a in command
    ]
    before = sorted((p.name, p.stat().st_size) for p in finished_run.rglob("*") if p.is_file())
    assert main([*command, "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "distdqn: error: cannot reach the Ray cluster at '127.0.0.1:1': Connection refused"
    assert not (tmp_path / "run").exists()
    assert sorted((p.name, p.stat().st_size) for p in finished_run.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["train", "--runtime", "inline", "--total-steps", "10"], "'inline'"),
        (["train", "--set", "placement.runtime=threads", "--total-steps", "10"], "'threads'"),
        (["train", "--set", "placement.runtime=ray", "--runtime", "inline", "--total-steps", "10"], "'inline'"),
        (["plan", "--runtime", "threads"], "'threads'"),
    ],
)
def test_an_address_with_another_runtime_named_is_one_line(tmp_path: Path, capsys, command: list[str], named: str):
    run_dir = ["--run-dir", str(tmp_path / "run")] if command[0] == "train" else []
    assert main([*command, *run_dir, "--address", "10.0.0.5:6379"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"distdqn: error: --address '10.0.0.5:6379' joins a Ray cluster, which the {named} runtime does not "
        "use; drop --address or use --runtime ray"
    )
    assert not (tmp_path / "run").exists()
