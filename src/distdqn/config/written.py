"""The `[distdqn]` table of written configs.

Written configs (a run's and a checkpoint's `config.toml`, `tune`'s `best.toml`, the k8s
`run.toml`) load back to the config that was written, field for field. TOML has no null, so
`config_to_toml` leaves the fields that are None out of their tables and names them in a
`[distdqn]` table instead, which also says that the file is resolved:

    [distdqn]
    resolved = true                                        # every field is here
    none = ["algorithm.lr_end", "env.max_episode_steps"]   # these are None

A resolved file is taken whole: no preset is merged under it (presets are retuned between
versions, and `--env` only names the env), and a field it lacks (one added to distdqn after the file
was written) takes its default. `none` also works in a hand-written file, to turn off a value the
preset sets. Files written before the table load as they always did.
"""

from __future__ import annotations

import copy
import difflib
import sys
import types
from typing import Any, Union, get_args, get_origin

import tomli_w

from distdqn.config.messages import dotted, short_repr, suggest_field
from distdqn.config.sections import is_section
from distdqn.config.tree import Config
from distdqn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


WRITTEN_TABLE = "distdqn"
"""The table of a config file that is about the file, not a section: `resolved` (every field is
in the file, so no preset is merged under it) and `none` (the fields that are None)."""
_WRITTEN_KEYS = ("resolved", "none")
_WRITTEN_HEADER = """\
# The resolved config, every field as the run used it: loading this file merges no preset under it
# ([distdqn] resolved), and the fields named in [distdqn] none are None (TOML has no null).
"""


def _none_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    paths: list[tuple[str, ...]] = []
    for key, item in value.items():
        paths += [(*prefix, key)] if item is None else _none_paths(item, (*prefix, key))
    return paths


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _toml_key(parts: tuple[str, ...]) -> str:
    """`("env", "kwargs", "a.b")` -> `env.kwargs."a.b"`: a dotted key as TOML spells it."""
    return ".".join(tomli_w.dumps({part: 0}).removesuffix(" = 0\n") for part in parts)


def config_to_toml(config: Config) -> str:
    """The resolved config as TOML that loads back to it, field for field: the fields that are
    None are left out of their tables and named in the `[distdqn]` table's `none`, which also
    marks the file resolved (see the module docstring)."""
    # Python's values, not JSON's: JSON would make an inf in env.kwargs null and a date a string
    data = config.model_dump()
    table = {"resolved": True, "none": sorted(_toml_key(path) for path in _none_paths(data))}
    return _WRITTEN_HEADER + tomli_w.dumps({WRITTEN_TABLE: table, **_without_none(data)})


def _key_parts(entry: str, where: str) -> list[str]:
    """`env.kwargs."a.b"` -> ["env", "kwargs", "a.b"], read as TOML reads a dotted key."""
    try:
        node: Any = tomllib.loads(f"{entry} = 0") if "\n" not in entry and "\r" not in entry else None
    except tomllib.TOMLDecodeError:
        node = None
    parts = []
    while isinstance(node, dict) and len(node) == 1:
        [(part, node)] = node.items()
        parts.append(part)
    if node != 0 or isinstance(node, bool) or not parts:
        raise ConfigError(f"{where}: {short_repr(entry)} is not a dotted key (algorithm.lr_end)")
    return parts


def _admits_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _set_none(data: dict[str, Any], parts: list[str], where: str) -> None:
    """Set the field at `parts` to None in `data`, a file's tables: a field of the tree that
    takes None, or a key inside a free-form table (`env.kwargs`)."""
    fields: dict[str, Any] | None = Config.model_fields
    node = data
    for depth, part in enumerate(parts):
        path = dotted(parts[: depth + 1])
        last = depth == len(parts) - 1
        annotation = None
        if fields is not None:
            if part not in fields:
                raise ConfigError(f"{where}: unknown field {short_repr(path)}{suggest_field('.'.join(parts))}")
            annotation = fields[part].annotation
            if last and is_section(annotation):
                raise ConfigError(f"{where}: {path} is a section; name one of its fields")
            if last and not _admits_none(annotation):
                raise ConfigError(f"{where}: {path} cannot be None")
            if not last and not is_section(annotation) and get_origin(annotation) is not dict:
                raise ConfigError(f"{where}: {path} has no fields")
        if last:
            node[part] = None
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {path} is not a table, got {short_repr(child)}")
        node = child
        fields = annotation.model_fields if is_section(annotation) else None


def take_written_table(data: dict[str, Any], origin: str) -> tuple[dict[str, Any], bool]:
    """A file's tables without its `[distdqn]` table, the fields that table names None set to
    None, and whether the file is resolved."""
    if WRITTEN_TABLE not in data:
        return data, False
    data = copy.deepcopy(data)
    table = data.pop(WRITTEN_TABLE)
    where = f"{origin}: {WRITTEN_TABLE}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table (resolved, none), got {short_repr(table)}")
    for key in table:
        if key not in _WRITTEN_KEYS:
            close = difflib.get_close_matches(str(key), _WRITTEN_KEYS, n=1)
            hint = f" (did you mean {WRITTEN_TABLE}.{close[0]}?)" if close else " (it holds resolved and none)"
            raise ConfigError(f"{where}.{dotted([key])}: unknown key{hint}")
    resolved = table.get("resolved", False)
    if not isinstance(resolved, bool):
        raise ConfigError(f"{where}.resolved must be true or false, got {short_repr(resolved)}")
    entries = table.get("none", [])
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ConfigError(f"{where}.none must be a list of dotted keys, got {short_repr(entries)}")
    for entry in entries:
        _set_none(data, _key_parts(entry, f"{where}.none"), f"{where}.none")
    return data, resolved
