"""The package tree is the architecture: imports only point down the layers of
docs/architecture.md, so that each layer can be read, and changed, without the ones above it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "distdqn"
LAYERS = [
    {"errors", "types", "config", "config_changes", "seeding", "schedules", "losses", "frames", "state_tree"}
    | {"devices", "memory", "extras", "env_ids"},
    {"envs", "replay", "networks", "sharded_head", "storage"},
    {"roles"},
    {"runtime"},
    {"run"},
    {"tools"},
    {"api"},
    {"cli", "__main__"},
]
"""Bottom first: a module may import its own layer's and the layers below."""


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    return next(index for index, names in enumerate(LAYERS) if top in names)


def test_every_import_points_down_the_layers():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(part for part in parts if part != "__init__")
        if module == "distdqn":
            continue
        imported = [
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distdqn.")
        ]
        upward += [f"{module} imports {name}" for name in imported if _layer(name) > _layer(module)]
    assert upward == []


def test_every_top_level_name_has_a_layer():
    names = {path.stem for path in PACKAGE.glob("*.py")} | {path.name for path in PACKAGE.iterdir() if path.is_dir()}
    known = set().union(*LAYERS) | {"__init__", "presets", "__pycache__"}
    assert names <= known, names - known
