"""Random `--set` overrides and random config files (with random `[distdqn]` tables, and YAML
with anchors and aliases): the validator answers with a Config or a one-line ConfigError, never a
traceback from deep inside, and within bounds of time and memory. Random links in a run directory:
a resume runs or is refused in one line, and never writes outside the directory."""

import hashlib
import json
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest
import tomli_w
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from distdqn.cli import main
from distdqn.config import Config, resolve_config, short_repr
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


REPR_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(alphabet=st.sampled_from("ab'\"\\\n\x00é"), max_size=120),
        st.binary(max_size=120),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=30),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=40), st.integers()), children, max_size=8),
    ),
    max_leaves=60,
)


@settings(max_examples=500, deadline=None)
@given(value=REPR_VALUES, limit=st.integers(4, 120))
def test_short_repr_is_the_cut_repr_without_building_it_whole(value, limit: int):
    """short_repr walks only as far as it shows (a 4.3 MB error line was the whole repr of
    env.kwargs), and shows what `repr` would, cut to `limit`."""
    text = repr(value)
    assert short_repr(value, limit) == (text if len(text) <= limit else text[: limit - 3] + "...")


ANCHORS = ("a", "b", "c")
YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=6)
)


@st.composite
def yaml_nodes(draw: st.DrawFn, depth: int = 0) -> str:
    """One YAML node in flow style: a scalar, an alias (of an anchor defined before it, after it,
    or never), or a list or mapping, which may carry an anchor and a merge key (`<<: *a`)."""
    kind = draw(st.sampled_from(["scalar", "alias", "list", "map"] if depth < 4 else ["scalar", "alias"]))
    if kind == "alias":
        return f"*{draw(st.sampled_from(ANCHORS))}"
    anchor = draw(st.sampled_from([None, None, *ANCHORS]))
    prefix = f"&{anchor} " if anchor else ""
    if kind == "scalar":
        return prefix + json.dumps(draw(YAML_SCALARS))
    children = draw(st.lists(yaml_nodes(depth + 1), max_size=4))
    if kind == "list":
        return prefix + "[" + ", ".join(children) + "]"
    keys = draw(st.lists(st.sampled_from(["<<", "k", "size", "x"]), min_size=len(children), max_size=len(children)))
    return prefix + "{" + ", ".join(f"{key}: {child}" for key, child in zip(keys, children, strict=True)) + "}"


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """A config file of sections whose fields (real ones and not) hold random nodes."""
    sections = draw(st.lists(st.sampled_from([*Config.model_fields, "x"]), min_size=1, max_size=4, unique=True))
    lines = []
    for section in sections:
        fields = draw(st.lists(st.sampled_from([path.rpartition(".")[2] for path in FIELDS]), max_size=3))
        nodes = [draw(yaml_nodes()) for _ in fields]
        lines.append(f"{section}: {{{', '.join(f'{f}: {n}' for f, n in zip(fields, nodes, strict=True))}}}")
    return "\n".join(lines) + "\n"


@st.composite
def billion_laughs(draw: st.DrawFn) -> str:
    """Nested anchors, each a list of `width` aliases of the one before: width**levels values."""
    levels, width = draw(st.integers(1, 9)), draw(st.integers(1, 10))
    lines = ["env:", "  kwargs:", f"    l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(yaml_documents(), billion_laughs()))
def test_yaml_with_anchors_and_aliases_loads_within_bounds_or_is_refused_in_one_line(tmp_path: Path, text: str):
    """A 1 KB file of nested aliases grew to 10.4 GB in 199 s: whatever a file's anchors and
    aliases, it loads, or is refused in one line, in well under a second and a few MB."""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        _validated(config_file=path)
        elapsed, peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 5 and peak < 32 << 20, (elapsed, peak, text)
