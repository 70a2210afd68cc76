"""Written configs (a run's and a checkpoint's config.toml, tune's best.toml, the k8s run.toml)
load back to the config that was written, field for field, whichever way they are read."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import tomli_w
import tomllib
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import distdqn.storage.checkpoint as checkpoint_module
from distdqn.config import (
    Config,
    build_config,
    config_to_toml,
    load_config_toml,
    override_config,
    preset_for,
    resolve_config,
)
from distdqn.errors import ConfigError
from distdqn.storage.checkpoint import load_checkpoint, save_checkpoint


def _write(path: Path, config: Config) -> Path:
    path.write_text(config_to_toml(config))
    return path


def _every_reading(path: Path) -> list[Config]:
    """What `train --config`, a checkpoint or `--resume`, and a direct build each make of a file."""
    return [resolve_config(None, path), load_config_toml(path), build_config(tomllib.loads(path.read_text()))]


def test_a_none_the_preset_sets_stays_none(tmp_path: Path):
    """CartPole's preset decays lr to 1e-4; the run turned that off, and its config.toml must too."""
    assert preset_for("CartPole-v1")["algorithm"]["lr_end"] == 1e-4
    config = resolve_config("CartPole-v1", overrides=["algorithm.lr_end=null"])
    assert config.algorithm.lr_end is None
    path = _write(tmp_path / "config.toml", config)
    assert _every_reading(path) == [config] * 3
    written = tomllib.loads(path.read_text())
    assert "algorithm.lr_end" in written["distdqn"]["none"] and "lr_end" not in written["algorithm"]


def test_none_inside_env_kwargs_is_kept(tmp_path: Path):
    kwargs = 'env.kwargs={layout_seed: 3, render_mode: null, "odd.key": null, deep: {x: null}}'
    config = resolve_config("distdqn/Maze-v0", overrides=[kwargs])
    path = _write(tmp_path / "config.toml", config)
    assert _every_reading(path) == [config] * 3
    assert config.env.kwargs == {"layout_seed": 3, "render_mode": None, "odd.key": None, "deep": {"x": None}}


def test_env_kwargs_keep_their_types(tmp_path: Path):
    """Found by the property test: an inf in env.kwargs came back None (JSON's null), a date as text."""
    config = resolve_config("CartPole-v1", overrides=["env.kwargs={x: .inf, when: 2020-01-02, sizes: [-.inf]}"])
    path = _write(tmp_path / "config.toml", config)
    assert _every_reading(path) == [config] * 3


def test_none_inside_a_list_of_env_kwargs_is_refused_before_anything_runs():
    """TOML has no null and a list has no key to name it by, so the run's config.toml could not hold it."""
    with pytest.raises(ConfigError, match=r"env.kwargs: .*None inside a list") as raised:
        resolve_config("CartPole-v1", overrides=["env.kwargs={sizes: [1, null]}"])
    assert "\n" not in str(raised.value)


def test_a_written_config_is_taken_whole_even_with_another_env(tmp_path: Path):
    """`--env` names the env; it does not slip that env's preset under a file that holds every field."""
    config = resolve_config("Acrobot-v1")  # its preset differs from CartPole's in lr, its decay, net, steps
    path = _write(tmp_path / "config.toml", config)
    moved = resolve_config("CartPole-v1", path)
    assert moved.env.id == "CartPole-v1"
    assert moved.model_dump(exclude={"env": {"id"}}) == config.model_dump(exclude={"env": {"id"}})


def test_overrides_still_apply_on_a_written_config(tmp_path: Path):
    path = _write(tmp_path / "config.toml", resolve_config("CartPole-v1", overrides=["algorithm.lr_end=null"]))
    assert resolve_config(None, path, ["algorithm.lr_end=3e-4"]).algorithm.lr_end == 3e-4


def test_a_field_a_written_file_lacks_takes_its_default_not_the_preset(tmp_path: Path):
    """A field added to distdqn after the file was written: the file is still complete as written."""
    """Presets are retuned between versions; a written file must not pick that up."""
    path = _write(tmp_path / "config.toml", resolve_config("CartPole-v1"))
    data = tomllib.loads(path.read_text())
    del data["algorithm"]["replay_ratio"], data["placement"]["evaluator"]["num_cpus"]
    path.write_text(tomli_w.dumps(data))
    config = resolve_config(None, path)
    assert preset_for("CartPole-v1")["algorithm"]["replay_ratio"] == 0.5
    assert config.algorithm.replay_ratio == Config().algorithm.replay_ratio == 0.25
    assert config.placement.evaluator.num_cpus == 0.5  # the whole tree's default, not RoleResources' 1.0
    assert config == load_config_toml(path)


def _old_style(config: Config) -> str:
    """config.toml as distdqn wrote it before the [distdqn] table: None fields left out."""

    def without_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_none(v) for k, v in value.items() if v is not None}
        return value

    return tomli_w.dumps(without_none(config.model_dump(mode="json")))


def test_old_files_without_the_table_load_as_before(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=["algorithm.lr_end=null", "stop_return=400"])
    path = tmp_path / "config.toml"
    path.write_text(_old_style(config))
    assert load_config_toml(path) == config  # a checkpoint's reading never merged a preset
    # `train --config` on such a file merges the preset under it, as it always did
    assert resolve_config(None, path) == override_config(config, ["algorithm.lr_end=1e-4"], "test")


def test_checkpoints_old_and_new_hold_their_config(tmp_path: Path):
    config = resolve_config("CartPole-v1", overrides=["algorithm.lr_end=null", "env.kwargs={render_mode: null}"])
    link = save_checkpoint(tmp_path, "latest", config, {"w": torch.zeros(2)}, {"counters": {}})
    assert load_checkpoint(link).config == config
    # an older checkpoint's config.toml (no [distdqn] table, no kwargs None) still loads
    old = config.model_copy(update={"env": config.env.model_copy(update={"kwargs": {}})})
    version = link.resolve()
    (version / "config.toml").write_text(_old_style(old))
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["config.toml"] = checkpoint_module._digest(version / "config.toml")
    (version / "manifest.json").write_text(json.dumps(manifest))
    assert load_checkpoint(link).config == old


def test_a_hand_written_file_may_turn_a_preset_value_off(tmp_path: Path):
    path = tmp_path / "my.toml"
    path.write_text('[distdqn]\nnone = ["algorithm.lr_end"]\n\n[env]\nid = "CartPole-v1"\n')
    config = resolve_config(None, path)
    assert config.algorithm.lr_end is None
    assert config.algorithm.lr == preset_for("CartPole-v1")["algorithm"]["lr"]  # the rest of the preset stays


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("distdqn = 1", "distdqn must be a table"),
        ("[distdqn]\nresolved = 1", "distdqn.resolved must be true or false"),
        ("[distdqn]\nnone = 'algorithm.lr_end'", "distdqn.none must be a list"),
        ("[distdqn]\nnone = [1]", "distdqn.none must be a list of dotted keys"),
        ("[distdqn]\nnone = ['algorithm.lr_ends']", "unknown field 'algorithm.lr_ends'"),
        ("[distdqn]\nnone = ['algorithm.lr']", "algorithm.lr cannot be None"),
        ("[distdqn]\nnone = ['algorithm']", "algorithm is a section"),
        ("[distdqn]\nnone = ['algorithm.lr.x']", "algorithm.lr has no fields"),
        ("[distdqn]\nnone = ['a = 1']", "not a dotted key"),
        ("[distdqn]\nnone = ['env.kwargs.a.b']\n[env.kwargs]\na = 1", "env.kwargs.a is not a table"),
        ("[distdqn]\ncomplete = true", "distdqn.complete: unknown key"),
    ],
)
def test_a_bad_distdqn_table_is_one_line_naming_the_file(tmp_path: Path, table: str, message: str):
    path = tmp_path / "bad.toml"
    path.write_text(table + "\n")
    for read in (lambda: resolve_config(None, path), lambda: load_config_toml(path)):
        with pytest.raises(ConfigError) as raised:
            read()
        assert message in str(raised.value) and str(raised.value).startswith(str(path)), str(raised.value)
        assert "\n" not in str(raised.value)


# -- load(write(c)) == c over random configs ----------------------------------------------------------
PRESET_IDS = [
    "CartPole-v1",
    "CliffWalking-v1",
    "FrozenLake-v1",
    "ALE/Pong-v5",
    "PongNoFrameskip-v4",
    "MinAtar/Breakout-v1",
    "distdqn/Maze-v0",
    "distdqn/Recommend-v0",
    "highway-fast-v0",
    "Acrobot-v1",
    "Pendulum-v1",  # no preset
]
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),  # nan is no value a config could be compared by
    st.text(max_size=8),
    st.dates(),
    st.datetimes(),
)
# what env.kwargs may hold: None as a table's value (not inside a list: TOML cannot write that)
KWARGS_LEAVES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
KWARGS = st.recursive(
    st.one_of(st.none(), KWARGS_LEAVES),
    lambda inner: st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
).filter(lambda value: isinstance(value, dict))
SPECIAL = {
    "env.id": st.sampled_from(PRESET_IDS),
    "env.kwargs": KWARGS,
    # these meet Config's whole-tree checks (lanes fit the replay, learning_starts is reachable)
    "env.num_envs": st.integers(1, 4),
    "env.frame_stack": st.integers(1, 4),
    "algorithm.n_step": st.integers(1, 4),
    "placement.num_actors": st.integers(1, 4),
    "placement.num_shards": st.integers(1, 4),
    "placement.actor_steps_per_call": st.integers(1, 4),
    "replay.capacity": st.integers(10_000, 10**9),
    "algorithm.learning_starts": st.integers(0, 5_000),
    "algorithm.batch_size": st.integers(1, 10_000),  # at most replay.capacity
    "network.hidden_sizes": st.lists(st.integers(1, 2**17), max_size=3).map(tuple),  # layers that fit a machine
}


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min_value"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds["min_value"], bounds["exclude_min"] = item.gt, True
        elif isinstance(item, annotated_types.Le):
            bounds["max_value"] = item.le
        elif isinstance(item, annotated_types.Lt):
            bounds["max_value"], bounds["exclude_max"] = item.lt, True
    return bounds


def _values(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Every value a field of this annotation and these constraints accepts (None included)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return st.one_of(*[_values(arg, metadata) for arg in args])
    if origin is Annotated:
        return _values(args[0], [m for info in args[1:] for m in getattr(info, "metadata", [info])])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(_values(args[0], []), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), _values(args[1], []), max_size=3)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    bounds = _bounds(metadata)
    if annotation is int:
        low = bounds.get("min_value", -(2**63)) + bounds.get("exclude_min", False)
        high = bounds.get("max_value", 2**63 - 1) - bounds.get("exclude_max", False)
        return st.integers(low, high)
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False, **bounds)
    if annotation is str:
        return st.text(max_size=12)
    raise AssertionError(f"no strategy for {annotation!r}")


def _tree(model: type[BaseModel], prefix: str = "") -> st.SearchStrategy[dict[str, Any]]:
    fields = {}
    for name, field in model.model_fields.items():
        path, annotation = prefix + name, field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields[name] = _tree(annotation, f"{path}.")
        else:
            fields[name] = SPECIAL[path] if path in SPECIAL else _values(annotation, field.metadata)
    return st.fixed_dictionaries(fields)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    data = draw(_tree(Config))
    env, placement = data["env"], data["placement"]
    placement["num_shards"] = min(placement["num_shards"], placement["num_actors"] * env["num_envs"])  # each is fed
    if env["backend"] == "envpool":
        env.update(preprocessing="atari", noop_max=max(1, env["noop_max"]))
    if placement["runtime"] == "ray":
        placement["head_shards"] = draw(st.integers(1, 3))
        placement["num_learners"] = placement["head_shards"] * draw(st.integers(1, 2))
    else:
        placement.update(num_learners=1, head_shards=1, rate_limit="ratio")
    if placement["head_shards"] > 1:
        placement["learner_compile"] = False
        data["network"]["action_features"] = False
    return build_config(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs())
def test_any_config_loads_back_from_what_it_writes(tmp_path: Path, config: Config):
    path = _write(tmp_path / "config.toml", config)
    assert resolve_config(None, path) == config
    assert load_config_toml(path) == config
    assert config_to_toml(load_config_toml(path)) == path.read_text()
