"""Container images: read each Dockerfile as `docker build` would and check what a build relies on.

`docker build` cannot run on the dev machines or in CI, so a small parser of our own (instructions,
line continuations, comments, ARG/ENV substitution, stages `FROM ... AS name`) and the basic
.dockerignore rules stand in for it. What they check: every file a COPY takes from the build context
exists and is sent, COPY --from names an earlier stage, the last stage runs `distdqn` as a non-root
user, the image gets exactly the Ray version pinned in pyproject.toml, and torch is the build and
version it should be.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parents[1]
DOCKERFILES = {"cpu": ROOT / "Dockerfile", "cuda": ROOT / "Dockerfile.cuda"}
VENV = "/opt/venv"


# ---- a Dockerfile parser, just enough for these files ------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    value: str  # the rest of the logical line, continuations joined, ARG and ENV values substituted
    line: int  # where it starts in the file


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # ARG and ENV values as the stage goes

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


def substitute(text: str, variables: dict[str, str]) -> str:
    """`$X`, `${X}` and `${X:-default}`; a variable the file does not define (`$PATH`) stays as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in variables:
            return variables[name]
        return match.group(2) if match.group(2) is not None else match.group(0)

    return _VARIABLE.sub(value, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join `\\`-continued lines; blank and comment lines are dropped, inside a continuation too."""
    lines: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        lines.append((start, " ".join(parts)))
        parts = []
    assert not parts, f"the file ends inside a continuation that starts at line {start}"
    return lines


def split_flags(value: str) -> tuple[dict[str, str], str]:
    """`--from=builder --chown=1000 a b` -> ({'from': 'builder', 'chown': '1000'}, 'a b')."""
    flags: dict[str, str] = {}
    while value.startswith("--"):
        flag, _, value = value.partition(" ")
        name, _, setting = flag[2:].partition("=")
        flags[name] = setting
        value = value.lstrip()
    return flags, value


def parse_env(value: str) -> dict[str, str]:
    words = shlex.split(value)
    if "=" not in words[0]:  # the old `ENV KEY value` form
        return {words[0]: " ".join(words[1:])}
    return dict(word.partition("=")[::2] for word in words)


def parse_dockerfile(path: Path) -> list[Stage]:
    global_args: dict[str, str] = {}  # ARGs before the first FROM: visible to FROM lines only
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, rest = text.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = substitute(default, global_args)  # a default may name an earlier ARG
            continue
        if keyword == "FROM":
            _, words = split_flags(substitute(rest, global_args))
            base, *alias = words.split()
            assert not alias or (len(alias) == 2 and alias[0].upper() == "AS"), f"{path.name}:{line}: {text}"
            stages.append(Stage(len(stages), alias[1].lower() if alias else None, base))
            continue
        assert stages, f"{path.name}:{line}: {keyword} before the first FROM"
        stage = stages[-1]
        if keyword == "ARG":  # `ARG X` in a stage takes the global default; `ARG X=v` sets its own
            name, has_default, default = rest.partition("=")
            stage.variables[name] = default if has_default else global_args.get(name, "")
        value = substitute(rest, stage.variables)
        if keyword == "ENV":
            stage.variables.update(parse_env(value))
        stage.instructions.append(Instruction(keyword, value, line))
    assert stages, f"{path.name} has no FROM"
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    assert instruction.value.startswith("["), f"line {instruction.line}: {instruction.keyword} is not in exec form"
    words = json.loads(instruction.value)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words)
    return words


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD -> (flags, sources, destination), shell or JSON form."""
    flags, rest = split_flags(instruction.value)
    words = json.loads(rest) if rest.startswith("[") else rest.split()
    assert len(words) >= 2, f"line {instruction.line}: COPY needs a source and a destination"
    return flags, words[:-1], words[-1]


_PIP_OPTIONS_WITH_VALUE = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-r", "--requirement"}
_PIP_OPTIONS_WITH_VALUE |= {"-f", "--find-links", "-t", "--target"}


@dataclass(frozen=True)
class PipInstall:
    options: dict[str, str]  # options that take a value, e.g. {"--index-url": "https://..."}
    requirements: list[str]  # what is installed, e.g. ['.[ray,atari]', 'torch==2.13.0']


def pip_installs(stage: Stage) -> list[PipInstall]:
    """Every `pip install` the stage's RUN lines make, in order."""
    installs = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|\|\||;", run.value):
            words = shlex.split(command)
            if len(words) < 2 or not words[0].endswith("pip") or words[1] != "install":
                continue
            options, requirements = {}, []
            args = iter(words[2:])
            for word in args:
                if word in _PIP_OPTIONS_WITH_VALUE:
                    options[word] = next(args)
                elif not word.startswith("-"):
                    requirements.append(word)
            installs.append(PipInstall(options, requirements))
    return installs


_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*|\.)(?:\[(?P<extras>[^\]]*)\])?(?P<spec>.*)$")


def requirement(text: str) -> tuple[str, set[str], str]:
    """'ray[default]==2.60.0' -> ('ray', {'default'}, '==2.60.0'); '.[ray,atari]' -> ('.', {...}, '')."""
    match = _REQUIREMENT.match(text.replace(" ", ""))
    assert match, f"not a requirement: {text!r}"
    extras = {e.strip() for e in (match["extras"] or "").split(",") if e.strip()}
    return match["name"].lower(), extras, match["spec"]


# ---- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay within one path element, `**` spans any number of them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!...`, regex) per pattern, in order."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = line.lstrip("!").strip().strip("/")
        cleaned = re.sub(r"^(\./)+", "", cleaned)
        patterns.append((exception, _pattern_regex(cleaned)))
    return patterns


def is_ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """A pattern matches a path or any folder above it; the last pattern that matches decides."""
    elements = path.strip("/").split("/")
    prefixes = ["/".join(elements[: k + 1]) for k in range(len(elements))]
    ignored = False
    for exception, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not exception
    return ignored


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ignore() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore((ROOT / ".dockerignore").read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def image(request: pytest.FixtureRequest) -> tuple[str, list[Stage]]:
    return request.param, parse_dockerfile(DOCKERFILES[request.param])


def tracked_files(folder: str) -> list[str]:
    """The files git tracks under a folder (the files a build of a clean checkout would see);
    outside a git checkout (an unpacked sdist), every file there but Python's caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", folder], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0:
        return [name for name in listed.stdout.split("\0") if name]
    return [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]


# ---- the parser's own rules, by hand --------------------------------------------------------------


def test_parser_joins_continuations_skips_comments_and_substitutes(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\nARG V=3.11\nFROM python:${V}-slim AS Build\nARG V\n"
        "RUN a \\\n    # a comment inside a continuation\n    && b $V\nENV P=/x:$PATH Q=1\nRUN echo $P\n"
        "FROM scratch\nCOPY --from=build --chown=1000 /x /y\n"
    )
    build, final = parse_dockerfile(dockerfile)
    assert (build.name, build.base, final.name, final.base) == ("build", "python:3.11-slim", None, "scratch")
    assert [(i.value, i.line) for i in build.all("RUN")] == [("a && b 3.11", 5), ("echo /x:$PATH", 9)]
    assert copy_parts(final.instructions[0]) == ({"from": "build", "chown": "1000"}, ["/x"], "/y")


def test_dockerignore_rules_by_hand():
    patterns = dockerignore("*\n!src\n**/__pycache__\n!keep/**/*.md\n/runs/\n")
    assert is_ignored(".git/config", patterns) and is_ignored("tests/test_x.py", patterns)
    assert not is_ignored("src", patterns) and not is_ignored("src/pkg/a.py", patterns)
    assert is_ignored("src/pkg/__pycache__/a.pyc", patterns) and is_ignored("__pycache__", patterns)
    assert not is_ignored("keep/a/b/c.md", patterns) and is_ignored("keep/a/b/c.txt", patterns)
    assert is_ignored("runs/x", dockerignore("/runs/")) and not is_ignored("src/runs.py", dockerignore("runs"))


# ---- the images ---------------------------------------------------------------------------------


def test_dockerignore_keeps_the_repository_clutter_out(ignore):
    for path in (".git", ".git/HEAD", ".venv", ".venv/bin/python", "runs", "tests", "benchmarks", ".mypy_cache"):
        assert is_ignored(path, ignore), f".dockerignore lets {path} into the build context"


def test_every_file_copied_from_the_build_context_exists_and_is_sent(image, ignore):
    name, stages = image
    for stage in stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_parts(instruction)
            if "from" in flags:
                continue
            for source in sources:
                where = f"{name}:{instruction.line}: {source}"
                assert "://" not in source, f"{where}: fetch at build time in a RUN step, pinned, not with ADD"
                relative = re.sub(r"^(\./)+", "", source).strip("/")
                matches = sorted(ROOT.glob(relative)) if any(c in relative for c in "*?[") else [ROOT / relative]
                assert matches and all(p.exists() for p in matches), f"{where} does not exist in the repository"
                for path in matches:
                    rel = path.relative_to(ROOT).as_posix()
                    assert not is_ignored(rel, ignore), f"{where}: .dockerignore keeps {rel} out of the context"
                    if path.is_dir():
                        dropped = [f for f in tracked_files(rel) if is_ignored(f, ignore)]
                        assert not dropped, f"{where}: .dockerignore drops tracked files {dropped}"


def test_copy_from_names_an_earlier_stage(image):
    name, stages = image
    for stage in stages:
        earlier = {s.name for s in stages[: stage.index]} | {str(s.index) for s in stages[: stage.index]}
        for instruction in stage.all("COPY"):
            flags, _, _ = copy_parts(instruction)
            if "from" in flags:
                assert flags["from"].lower() in earlier, f"{name}:{instruction.line}: no earlier stage {flags['from']}"


def test_last_stage_runs_distdqn_as_a_fixed_non_root_user_with_only_the_venv(image):
    name, stages = image
    final = stages[-1]
    users = final.all("USER")
    assert users, f"{name}: the last stage sets no USER, so it runs as root"
    uid = users[-1].value.split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can check it without reading the image's /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, f"{name}: USER {users[-1].value} is not a numeric non-root uid"
    assert any(f"--uid {uid}" in run.value for run in final.all("RUN")), f"{name}: no user is created with uid {uid}"

    entrypoint = exec_form(final.all("ENTRYPOINT")[-1])
    if entrypoint[:2] == ["tini", "--"]:  # an init that only forwards signals and reaps
        entrypoint = entrypoint[2:]
    assert entrypoint == ["distdqn"], f"{name}: ENTRYPOINT {entrypoint}"
    assert exec_form(final.all("CMD")[-1]), f"{name}: CMD is empty"

    # The runtime stage is slim: the venv (and, for CUDA, its interpreter) from the builder, no sources.
    copies = [copy_parts(i) for i in final.all("COPY") + final.all("ADD")]
    assert all("from" in flags for flags, _, _ in copies), f"{name}: the last stage copies from the build context"
    assert any(sources == [VENV] and dest == VENV for _, sources, dest in copies), f"{name}: no venv copied"
    # `ray` and `distdqn` on PATH, for `docker run` and for KubeRay's `bash -l` (whose /etc/profile resets PATH).
    assert final.variables["PATH"].startswith(f"{VENV}/bin:"), f"{name}: the venv is not first on PATH"
    assert any("/etc/profile.d/" in run.value and f"{VENV}/bin" in run.value for run in final.all("RUN")), name


def test_image_gets_exactly_the_ray_version_that_pyproject_pins(image, pyproject):
    name, stages = image
    extras = pyproject["project"]["optional-dependencies"]
    (ray_requirement,) = [text for text in extras["ray"] if requirement(text)[0] == "ray"]
    ray, _, pin = requirement(ray_requirement)
    # A Ray driver and the cluster it joins must run the same version, so the extra pins it exactly.
    assert ray == "ray" and re.fullmatch(r"==\d+(\.\d+)*", pin), f"the ray extra must pin one version: {pin!r}"

    installs = [(stage, install) for stage in stages for install in pip_installs(stage)]
    package = [(s, i) for s, i in installs if any(requirement(r)[0] == "." for r in i.requirements)]
    # Its dependencies first (a layer that survives changes to src/), then the package alone.
    assert len(package) == 2, f"{name}: the package should be installed with its extras, then alone"
    stage, install = package[0]
    (local,) = [requirement(r) for r in install.requirements if requirement(r)[0] == "."]
    assert {"ray", "atari", "envpool"} <= local[1], f"{name}: extras {local[1]}"
    # Any other mention of ray must leave the version to pyproject (or repeat its pin exactly).
    for _, other in installs:
        for text in other.requirements:
            other_name, _, spec = requirement(text)
            if other_name == "ray":
                assert spec in ("", pin), f"{name}: {text} disagrees with pyproject's {ray_requirement}"
    # What the package's build reads must be copied before it: the readme, and the packages' folder.
    copied = {source for i in stage.all("COPY") for source in copy_parts(i)[1]}
    assert pyproject["project"]["readme"] in copied, f"{name}: setuptools needs the readme to build the wheel"
    for folder in pyproject["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert folder in copied, f"{name}: {folder}/ is not copied into the builder"
    assert "pyproject.toml" in copied
    assert any(i.value.startswith(f"{VENV}/bin/pip") for i in stage.all("RUN")), f"{name}: not installed in {VENV}"


def test_torch_is_the_makefiles_version_and_the_cpu_image_takes_the_cpu_build(image):
    name, stages = image
    makefile_pin = re.search(r"^TORCH\s*:=\s*torch==(\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_pin, "the Makefile no longer pins torch"
    torch_installs = [
        (install, requirement(r)[2])
        for stage in stages
        for install in pip_installs(stage)
        for r in install.requirements
        if requirement(r)[0] == "torch"
    ]
    assert torch_installs, f"{name} never installs torch"
    for _, spec in torch_installs:
        assert spec == f"=={makefile_pin[1]}", f"{name}: torch{spec}, the Makefile has torch=={makefile_pin[1]}"
    # The first torch install decides the build; later ones only hold it in place.
    index = torch_installs[0][0].options.get("--index-url", "")
    if name == "cpu":
        assert index == "https://download.pytorch.org/whl/cpu", f"{name}: torch from {index!r}, a CUDA build"
    else:
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", index), f"{name}: torch from {index!r}"


def test_the_two_images_differ_only_in_their_base_and_torch_build(pyproject):
    cpu, cuda = (parse_dockerfile(DOCKERFILES[k]) for k in ("cpu", "cuda"))
    python = pyproject["tool"]["mypy"]["python_version"]  # the Python the code is type-checked for
    assert cpu[-1].base.startswith(f"python:{python}-"), cpu[-1].base
    assert cuda[-1].base.startswith(("nvidia/cuda:", "pytorch/pytorch:")), cuda[-1].base
    uv_python = rf'uv python install "?{re.escape(python)}"?(\s|$)'
    assert any(re.search(uv_python, run.value) for stage in cuda for run in stage.all("RUN")), "CUDA image's Python"

    def runtime_settings(stages: list[Stage]) -> tuple:
        final = stages[-1]
        return tuple(tuple(i.value for i in final.all(k)) for k in ("USER", "WORKDIR", "ENTRYPOINT", "CMD", "ENV"))

    assert runtime_settings(cpu) == runtime_settings(cuda)
