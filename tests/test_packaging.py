"""What the package declares against what it does: every third-party import is a dependency or
named in `distdqn.extras`, every extra an error names exists, a missing extra is one line, the
built wheel holds what it must, and `distdqn --help` imports none of the heavy packages."""

import ast
import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from distdqn import __version__
from distdqn.cli import main
from distdqn.errors import MissingExtra
from distdqn.extras import EXTRA_OF_MODULE
from distdqn.run import metrics

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "distdqn"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _top_level_modules(distribution: str) -> frozenset[str]:
    """The top-level modules `distribution` installs here (none when it is not installed)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return frozenset()
    return frozenset(file.parts[0].partition(".")[0] for file in files)


def _provided(module: str, requirements: list[str]) -> bool:
    """Whether one of `requirements` installs `module`: by its files where it is installed, else
    by its name."""
    names = [Requirement(requirement).name for requirement in requirements]
    return any(module in _top_level_modules(name) or _normal(module) == _normal(name) for name in names)


def _third_party_imports() -> set[str]:
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"distdqn", "__future__"}


def test_every_third_party_import_is_a_dependency_or_an_extra():
    undeclared = {
        module
        for module in _third_party_imports()
        if module not in EXTRA_OF_MODULE and not _provided(module, PROJECT["dependencies"])
    }
    assert undeclared == set()


@pytest.mark.parametrize("module", sorted(EXTRA_OF_MODULE))
def test_each_optional_module_comes_with_the_extra_named_for_it(module):
    extra = EXTRA_OF_MODULE[module]
    assert extra in EXTRAS
    assert _provided(module, EXTRAS[extra]), (module, extra)


def test_every_extra_an_install_line_names_exists():
    """In error messages and the docs (`pip install 'distdqn[X]'`), and in the Makefile's EXTRAS."""
    named = set()
    for path in [*PACKAGE.rglob("*.py"), ROOT / "CONTRIBUTING.md"]:
        for group in re.findall(r"distdqn\[([\w,-]+)\]", path.read_text()):
            named |= set(group.split(","))
    named |= set(re.search(r"^EXTRAS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(","))
    assert named and named <= set(EXTRAS), named - set(EXTRAS)


def test_the_all_extra_holds_every_extra_a_user_installs():
    (requirement,) = EXTRAS["all"]
    assert Requirement(requirement).extras == set(EXTRAS) - {"all", "dev", "docs", "bench", "envpool"}


def test_a_module_an_extra_brings_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails as if not installed
    monkeypatch.delitem(sys.modules, "distdqn.tools.plots", raising=False)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "curves.png")]) == 2
    assert capsys.readouterr().err == (
        "distdqn: error: matplotlib is not installed; it comes with the plot extra: pip install 'distdqn[plot]'\n"
    )


def test_tensorboard_is_written_when_installed_and_required_only_when_asked_for(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(metrics, "installed", lambda module: False)
    assert metrics.tensorboard_enabled("auto") is False
    assert metrics.tensorboard_enabled(False) is False
    needs = "logging.tensorboard = true needs the tensorboard extra: pip install 'distdqn[tensorboard]'"
    with pytest.raises(MissingExtra, match=re.escape(needs)):
        metrics.tensorboard_enabled(True)
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--set", "logging.tensorboard=true"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not run_dir.exists()  # refused before anything was written
    monkeypatch.setattr(metrics, "installed", lambda module: True)
    assert metrics.tensorboard_enabled("auto") is True


def test_help_imports_neither_torch_nor_ray_nor_the_config():
    """`distdqn --help` took 2.7 s when the CLI imported torch to print it. (`import distdqn`
    registers distdqn's envs with gymnasium, so gymnasium and NumPy come with any command.)"""
    heavy = ["torch", "ray", "pydantic", "safetensors", "yaml"]
    script = (
        "import sys\nfrom distdqn.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('imported:', *sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "imported:"


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"distdqn {__version__}\n"
    assert "version" in PROJECT["dynamic"] and "version" not in PROJECT


def test_the_wheel_holds_the_presets_and_py_typed_and_no_tests(tmp_path: Path):
    pytest.importorskip("build")
    source = tmp_path / "source"  # a copy: the build writes build/ and an egg-info beside the sources
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    (wheel,) = tmp_path.glob("distdqn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    presets = {path.name for path in (PACKAGE / "presets").glob("*.toml")}
    assert {name.rpartition("/")[2] for name in names if name.startswith("distdqn/presets/")} >= presets
    assert "distdqn/py.typed" in names
    assert not [name for name in names if name.startswith("tests/") or "/tests/" in name]
    assert f"distdqn-{__version__}.dist-info/licenses/LICENSE" in names


def test_an_env_whose_gymnasium_dependency_is_missing_names_our_extra(tmp_path: Path, monkeypatch, capsys):
    """Gymnasium's own advice (`pip install swig`, `gymnasium[box2d]`) is replaced by the extra."""
    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [name for name in sys.modules if name.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["train", "--env", "LunarLander-v3", "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "distdqn: error: env 'LunarLander-v3' needs a package that is not installed:"
        " it comes with the box2d extra: pip install 'distdqn[box2d]'"
    )
