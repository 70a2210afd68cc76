"""Random `--set` overrides and random config files (with random `[distdqn]` tables): the
validator answers with a Config or a one-line ConfigError, never a traceback from deep inside.
Random links in a run directory: a resume runs or is refused in one line, and never writes
outside the directory."""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import tomli_w
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from distdqn.cli import main
from distdqn.config import Config, resolve_config
from distdqn.errors import ConfigError


def _paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _paths(annotation, f"{prefix}{name}.")
        paths.append(f"{prefix}{name}")
    return paths


FIELDS = _paths(Config)
KEYS = st.one_of(
    st.sampled_from(FIELDS),
    st.text(min_size=1, max_size=12),
    st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(FIELDS), st.text(max_size=6)),
)
RAW_VALUES = st.one_of(
    st.sampled_from(
        [
            "true",
            "null",
            ".inf",
            "-.inf",
            ".nan",
            "[]",
            "{}",
            "[-5]",
            "[0]",
            "1e308",
            "-1",
            "2**70",
            "{a: 1}",
            "'x'",
            "ALE/Pong-v5",
            "0",
            "1",
            "0.5",
            "[64, 64]",
            "&a [*a]",
            "{render_mode: 5}",
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=20),
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=10),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
SECTION_DATA = st.dictionaries(
    st.sampled_from([*Config.model_fields, "other"]),
    st.one_of(TREES, st.dictionaries(st.sampled_from(FIELDS + ["x"]), TREES, max_size=4)),
    max_size=4,
)


def _validated(**kwargs) -> None:
    try:
        assert isinstance(resolve_config(**kwargs), Config)
    except ConfigError as error:
        assert "\n" not in str(error) and len(str(error)) < 1000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, RAW_VALUES), max_size=4))
def test_random_set_overrides_are_validated_or_refused_in_one_line(assignments):
    _validated(overrides=[f"{key}={value}" for key, value in assignments])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=SECTION_DATA, as_yaml=st.booleans())
def test_random_config_files_are_validated_or_refused_in_one_line(tmp_path: Path, data, as_yaml: bool):
    path = tmp_path / ("run.yaml" if as_yaml else "run.toml")
    if as_yaml:
        path.write_text(yaml.safe_dump(data))
    else:
        try:
            path.write_text(tomli_w.dumps(data))
        except (TypeError, ValueError):  # None and other values TOML cannot hold
            return
    _validated(config_file=path)


WRITTEN_TABLES = st.dictionaries(
    st.sampled_from(["resolved", "none", "nones"]),
    st.one_of(
        TREES,
        st.lists(
            st.one_of(
                st.sampled_from(FIELDS),
                st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(FIELDS), st.text(max_size=6)),
                st.text(max_size=12),
            ),
            max_size=3,
        ),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.one_of(WRITTEN_TABLES, TREES), data=SECTION_DATA)
def test_random_distdqn_tables_are_read_or_refused_in_one_line(tmp_path: Path, table, data):
    """The `[distdqn]` table a written config opens with (resolved, none), thrown at at random."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"distdqn": table, **data}))
    _validated(config_file=path)


def test_a_key_holding_a_newline_is_quoted_in_the_one_line_error(tmp_path: Path):
    """Found by the fuzzer: `{env: {"\\n": null}}` in a YAML file gave a two-line error."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"env": {"\n": None}}))
    try:
        resolve_config(config_file=path)
    except ConfigError as error:
        assert "\n" not in str(error) and "env.'\\n'" in str(error), str(error)
    else:
        raise AssertionError("an unknown key was accepted")


RUN_NAMES = [
    "metrics.jsonl",
    "metrics.jsonl.tmp",
    "placement.json",
    "placement.json.tmp",
    "config.toml",
    "config.toml.tmp",
    ".lock",
    ".lock.tmp",
    "tb",
    "tb/events.out.tfevents.0",
    "checkpoints",
    "checkpoints/latest",
    "checkpoints/best",
]
"""Names a run reads, writes or renames, temporaries included."""
LINKS = ["symlink to a file", "symlink to a directory", "hard link"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("small") / "run"
    quick = ["--set", "logging.progress=false", "--set", "algorithm.learning_starts=0"]
    quick += ["--set", "evaluation.episodes=1", "--set", "network.hidden_sizes=[8]"]
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "16", *quick]) == 0
    return run_dir


def _contents(directory: Path) -> dict[str, str]:
    """Every entry under `directory`, links not followed: a file's SHA-256, a link's target."""
    entries = {}
    for root, directories, files in os.walk(directory):
        for name in directories + files:
            path = Path(root) / name
            if path.is_symlink():
                entries[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                entries[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[str(path)] = "directory"
    return entries


def _plant(run_dir: Path, outside: Path, name: str, link: str) -> None:
    """Put a link of kind `link` at `run_dir/name`, to a new file or directory in `outside` that
    holds what the name held (so that the run could use it, were it not a link)."""
    path = run_dir / name
    if any(parent.is_symlink() for parent in [path.parent, *path.parent.parents]):
        return  # inside a directory that is already a link: planting here would write outside
    path.parent.mkdir(parents=True, exist_ok=True)
    target = outside / name.replace("/", "_")
    if path.is_dir():  # a directory, or a link to one (`latest`): the copy is of what it names
        shutil.copytree(path.resolve(), target, symlinks=True)
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)
    elif link == "symlink to a directory" and not path.exists():
        target.mkdir()
    elif path.exists():
        shutil.copyfile(path, target)
        path.unlink()
    else:
        target.write_text("outside\n")
    if link == "hard link" and target.is_file():
        os.link(target, path)
    else:
        path.symlink_to(target)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    links=st.dictionaries(st.sampled_from(RUN_NAMES), st.sampled_from(LINKS), min_size=1, max_size=4),
    cut=st.booleans(),
    tensorboard=st.booleans(),
)
def test_links_in_a_run_directory_never_lead_to_a_write_outside_it(
    small_run: Path, tmp_path: Path, capsys, links: dict[str, str], cut: bool, tensorboard: bool
):
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    run_dir, outside = root / "run", root / "outside"
    shutil.copytree(small_run, run_dir, symlinks=True)
    outside.mkdir()
    if cut:  # a line past `latest`: the resume rewrites metrics.jsonl through its temporary
        with (run_dir / "metrics.jsonl").open("a") as metrics:
            metrics.write(json.dumps({"env_steps": 10**6, "updates": 0, "wall_s": 0.0}) + "\n")
    for name in sorted(links):  # a directory before what is in it
        _plant(run_dir, outside, name, links[name])
    before = _contents(outside)
    capsys.readouterr()
    flags = ["--total-steps", "32", "--set", f"logging.tensorboard={str(tensorboard).lower()}"]
    code = main(["train", "--resume", str(run_dir), *flags])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2)
    if code == 2:
        assert err.startswith("distdqn: error: ") and "\n" not in err, err
    assert _contents(outside) == before
    shutil.rmtree(root)
