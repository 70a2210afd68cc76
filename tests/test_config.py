"""Config: presets by env id, files, overrides, validation errors that name field and value."""

import importlib.util
import time
import tracemalloc
from pathlib import Path

import pytest
from pydantic import BaseModel

from distdqn.config import (
    Config,
    PlacementConfig,
    config_to_toml,
    field_paths,
    load_config_toml,
    override_config,
    preset_for,
    reachable_replay_size,
    resolve_config,
    shard_lanes,
    short_repr,
)
from distdqn.errors import ConfigError


def test_preset_is_chosen_by_env_id():
    assert (
        resolve_config("CartPole-v1").algorithm.replay_ratio == preset_for("CartPole-v1")["algorithm"]["replay_ratio"]
    )
    maze = resolve_config("distdqn/Maze-v0")
    assert maze.env.id == "distdqn/Maze-v0" and maze.algorithm.gamma == 0.9
    acrobot_lr = preset_for("Acrobot-v1")["algorithm"]["lr"]
    assert resolve_config("Acrobot-v1").algorithm.lr == acrobot_lr != Config().algorithm.lr
    assert resolve_config("Pendulum-v1").algorithm == Config().algorithm  # no preset: defaults


def test_default_env_is_cartpole():
    assert resolve_config().env.id == "CartPole-v1"


def test_file_then_overrides(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("env:\n  id: CartPole-v1\nalgorithm:\n  lr: 0.01\n  batch_size: 32\n")
    config = resolve_config(None, path, ["algorithm.lr=5e-4", "network.hidden_sizes=[32, 16]", "network.dueling=true"])
    assert config.algorithm.lr == 5e-4
    assert config.algorithm.batch_size == 32
    assert config.network.hidden_sizes == (32, 16) and config.network.dueling


def test_toml_round_trip(tmp_path: Path):
    config = resolve_config("distdqn/Maze-v0", overrides=["stop_return=0.5", "env.kwargs={layout_seed: 3}"])
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(config))
    assert load_config_toml(path) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algorithm.lr=-1", "algorithm.lr: Input should be greater than 0 (got -1)"),
        ("algorithm.lr=fast", "algorithm.lr: Input should be a valid number"),
        ("algorithm.nope=1", "unknown field 'algorithm.nope'"),
        ("nope.lr=1", "unknown field 'nope'"),
        ("algorithm=1", "is a section"),
        ("algorithm.lr", "expects key.path=value"),
        ("algorithm.loss=l1", "algorithm.loss: Input should be 'huber' or 'mse' (got 'l1')"),
        ("replay.capacity=10", "replay.capacity=10 leaves"),
    ],
)
def test_bad_overrides_name_the_field_and_value(override, message):
    with pytest.raises(ConfigError, match=None) as error:
        resolve_config("CartPole-v1", overrides=[override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_file_values_name_the_file(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[evaluation]\nepisodes = 0\n")
    with pytest.raises(ConfigError, match=r"bad.toml: evaluation.episodes: .*\(got 0\)"):
        resolve_config(None, path)
    path.write_text("[evaluation\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve_config(None, path)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(None, tmp_path / "missing.toml")


@pytest.mark.parametrize("runtime", ["inline", "threads"])
def test_one_process_runtimes_take_one_learner(runtime: str):
    with pytest.raises(ConfigError) as raised:
        resolve_config(overrides=["placement.num_learners=2", f"placement.runtime={runtime}"])
    # the section check names its values; the whole section is not echoed after it
    assert str(raised.value) == f"config: placement: num_learners=2 needs the ray runtime; {runtime} has 1"


def test_override_config_keeps_the_rest():
    config = resolve_config("CartPole-v1")
    changed = override_config(config, ["total_steps=123"], origin="test")
    assert changed.total_steps == 123 and changed.algorithm == config.algorithm


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from walk(annotation)
            else:
                yield name, field.description

    undocumented = [name for name, doc in walk(Config) if not doc]
    assert undocumented == []


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            paths += _field_paths(type(default), f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_docs_config_reference_lists_every_field_with_its_docstring():
    """The docs site's config reference is generated from the models at build time by this hook."""
    hook = Path(__file__).parents[1] / "docs" / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", hook)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.reference()
    missing = [path for path in _field_paths(Config) if f"| `{path}` |" not in reference]
    assert not missing, f"the docs' config reference lacks {missing}"
    runtime = PlacementConfig.model_fields["runtime"].description
    assert " ".join(runtime.split()) in reference


@pytest.mark.parametrize("runtime", ["inline", "threads"])
def test_free_running_needs_roles_that_run_apart(runtime: str):
    """In one process `unlimited` made max_update_lag (64) updates per env step; it is refused."""
    with pytest.raises(ConfigError, match=r"placement: rate_limit='unlimited' needs the ray runtime"):
        resolve_config("CartPole-v1", overrides=["placement.rate_limit=unlimited", f"placement.runtime={runtime}"])
    assert (
        resolve_config(
            "CartPole-v1", overrides=["placement.rate_limit=unlimited", "placement.runtime=ray"]
        ).placement.rate_limit
        == "unlimited"
    )


def test_atari_preset_warms_up_like_dopamine():
    algorithm = resolve_config("ALE/Pong-v5").algorithm
    assert algorithm.learning_starts == 20_000 and algorithm.eps_decay_start == 20_000


@pytest.mark.parametrize(
    "overrides",
    [
        # one environment, a stack of 4, 1-step returns: 4 slots hold no whole stack with its bootstrap
        ["replay.capacity=4", "env.num_envs=1"],
        # 3 lanes over 2 shards: shard 0's two lanes get 24 // 2 // 2 = 6 slots each, not 24 // 3 = 8
        ["replay.capacity=24", "env.num_envs=3", "placement.num_shards=2"],
    ],
)
def test_capacity_check_counts_the_frame_stack_and_the_shortest_lanes(overrides):
    common = [
        "env.frame_stack=4",
        "algorithm.n_step=1",
        "placement.actor_steps_per_call=1",
        "algorithm.learning_starts=0",
    ]
    with pytest.raises(ConfigError, match="slots per environment on shard 0"):
        resolve_config("CartPole-v1", overrides=common + overrides)


def test_learning_starts_the_replay_can_never_hold_is_refused():
    """CartPole with a 1,000 replay and 1,000 learning_starts ran 4,000 env steps and 0 updates."""
    with pytest.raises(ConfigError) as error:
        resolve_config("CartPole-v1", overrides=["replay.capacity=1000"])
    # 4 lanes of 250 slots; 3-step returns leave 3 records a lane pending: at most 988 sampleable
    message = str(error.value)
    assert "algorithm.learning_starts=1000" in message and "replay.capacity=1000" in message
    assert "at most 988 sampleable" in message and "\n" not in message
    assert resolve_config("CartPole-v1", overrides=["replay.capacity=1000", "algorithm.learning_starts=988"])


def _integer_fields() -> list[str]:
    def annotation(path: str):
        model, *sections, name = [Config, *path.split(".")]
        for section in sections:
            model = model.model_fields[section].annotation
        return model.model_fields[name].annotation

    return [path for path in field_paths() if "int" in str(annotation(path)) and "Literal" not in str(annotation(path))]


@pytest.mark.parametrize("path", _integer_fields())
def test_every_integer_field_stays_within_int64(path: str):
    """NumPy, torch and TOML hold 64 bits: a batch_size of 10**23 ended in an OverflowError traceback."""
    value = f"[{2**63}]" if path == "network.hidden_sizes" else str(2**63)
    with pytest.raises(ConfigError) as raised:
        resolve_config("CartPole-v1", overrides=[f"{path}={value}"])
    assert f"config: {path}: " in str(raised.value) and "\n" not in str(raised.value)


def test_a_batch_larger_than_the_replay_is_refused():
    with pytest.raises(ConfigError, match=r"algorithm.batch_size=1001 is more than replay.capacity=1000"):
        resolve_config(
            "CartPole-v1",
            overrides=["replay.capacity=1000", "algorithm.learning_starts=0", "algorithm.batch_size=1001"],
        )
    assert resolve_config(
        "CartPole-v1", overrides=["replay.capacity=1000", "algorithm.learning_starts=0", "algorithm.batch_size=1000"]
    )


def test_a_shard_no_actor_environment_feeds_is_refused():
    """It was a ReplayShard's ValueError traceback once the run had started."""
    with pytest.raises(
        ConfigError,
        match=r"num_shards=7 is more than the 6 actor environments \(placement.num_actors=2 x env.num_envs=3\)",
    ):
        resolve_config(overrides=["placement.num_shards=7", "placement.num_actors=2", "env.num_envs=3"])
    assert resolve_config(overrides=["placement.num_shards=6", "placement.num_actors=2", "env.num_envs=3"])


@pytest.mark.parametrize(
    ("actors", "envs", "num_shards"), [(1, 1, 1), (2, 3, 1), (2, 3, 4), (3, 5, 2), (3, 5, 4), (1, 7, 3), (2, 2, 4)]
)
def test_shard_lanes_and_the_reachable_size_are_counted_over_every_shard(actors: int, envs: int, num_shards: int):
    """In closed form (a loop over 2**62 shards would never end; len(range()) overflowed)."""
    config = resolve_config(
        overrides=[f"placement.num_actors={actors}", f"env.num_envs={envs}", f"placement.num_shards={num_shards}"]
    )
    counted = [len(range(j, actors * envs, num_shards)) for j in range(num_shards)]
    assert [shard_lanes(config, j) for j in range(num_shards)] == counted
    unsampleable = config.algorithm.n_step + config.env.frame_stack - 1
    by_shard = [n * (config.replay.capacity // num_shards // n - unsampleable) for n in counted]
    assert reachable_replay_size(config) == sum(by_shard)


def _billion_laughs(levels: int) -> str:
    """The 1 KB file of issue 18: each anchor a list of ten aliases of the one before."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(["env:", "  kwargs:", *(f"    {line}" for line in lines)]) + "\n"


def test_a_billion_laughs_file_is_refused_at_its_first_alias(tmp_path: Path):
    """10**9 strings once expanded (10.4 GB after 199 s, before the refusal); refused unexpanded."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_billion_laughs(9))
    assert path.stat().st_size < 1024
    with pytest.raises(ConfigError, match=r"bomb.yaml: line 4: the alias \*a0 is refused") as raised:
        resolve_config("distdqn/Maze-v0", path)
    assert "\n" not in str(raised.value)


def test_an_anchor_without_an_alias_and_an_undefined_alias_read_as_before(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("algorithm: &algo\n  lr: 0.01\n")
    assert resolve_config(None, path).algorithm.lr == 0.01
    assert resolve_config(None, None, ["env.id=*nothing"]).env.id == "*nothing"  # not YAML, so read as text


def test_short_repr_builds_only_what_it_shows():
    """An error quoting 4.3 MB of expanded env.kwargs built the whole repr, then cut it."""
    shared: list = ["lol"] * 10
    for _ in range(7):
        shared = [shared] * 10  # 10**8 strings when written out, a few hundred objects in memory
    tracemalloc.start()
    try:
        text = short_repr({"kwargs": shared})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == ("{'kwargs': " + "[" * 8 + ", ".join(["'lol'"] * 10))[:77] + "..."
    assert peak < 1 << 20, peak
    looped: list = []
    looped.append(looped)
    assert short_repr(looped) == "[[...]]"


def test_a_long_unknown_key_is_answered_at_once():
    """A key of 10**5 characters took 22 s of close-spelling search; past twice the longest field
    name nothing can be close."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match="unknown field") as raised:
        resolve_config(overrides=["a" * 50_000 + "=1"])
    assert time.monotonic() - started < 3 and len(str(raised.value)) < 300


def test_an_env_id_no_file_could_be_named_gets_no_preset():
    """`--env` of 5,000 characters ended in OSError (file name too long) looking for its preset."""
    assert resolve_config("a" * 5000).algorithm == Config().algorithm
