"""Config files read within bounds: TOML or YAML of at most MAX_CONFIG_BYTES, nested at most
MAX_NESTING deep, and YAML without aliases, each refused in one line before it costs memory or
a traceback. The same YAML loader reads `--set` values and `tune`'s parameters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from distdqn.config.messages import short_repr, short_text
from distdqn.config.sections import is_section
from distdqn.config.tree import Config
from distdqn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few hundred lines at most; past 1 MiB it is refused unread."""
MAX_NESTING = 32
"""Levels of tables and lists a config value may nest (the tree is three, env.kwargs a few more):
the parsers and the validators recurse, and thousands of `[` ended in a RecursionError."""


class YamlRefused(yaml.YAMLError):
    """YAML that `load_yaml` refuses to read: an alias, or nesting past MAX_NESTING."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line
        """Where, counted from 1."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a bound on nesting.

    Every alias (`*a`) repeats the node its anchor (`&a`) names, so nested anchors expand
    exponentially: a 1 KB "billion laughs" file grew to 10.4 GB as the config was checked and
    copied. A config tree has no need of them, so an alias is refused where it stands (an
    anchor alone is harmless, and an undefined alias stays PyYAML's own error)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self.anchors:
                name = event.anchor if len(event.anchor) <= 40 else event.anchor[:37] + "..."
                raise YamlRefused(
                    f"the alias *{name} is refused: an alias repeats a value, and nested ones grow a "
                    "kilobyte into gigabytes; write the value out",
                    event.start_mark.line + 1,
                )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise YamlRefused(f"values nest deeper than {MAX_NESTING} levels", line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """YAML as `yaml.safe_load` reads it, less aliases and deep nesting (`YamlRefused`): the
    loader of config files, `--set` values and `tune`'s `--param` and `--start` values."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: no Python objects


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether tables and lists in `value` nest deeper than `limit` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict (not yet validated). Files past MAX_CONFIG_BYTES, YAML
    aliases, and values nested past MAX_NESTING are refused in one line."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file must end in .toml, .yaml or .yml: {path}")
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        size = f"{MAX_CONFIG_BYTES >> 20} MiB"
        raise ConfigError(f"config file {path} is larger than {size}; a config is a few hundred lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else load_yaml(text) or {}
    except YamlRefused as error:
        raise ConfigError(f"{path}: line {error.line}: {error}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot parse config file {path}: {short_text(str(error))}") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise ConfigError(f"cannot parse config file {path}: {short_text(str(error).split(';')[0])}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"cannot parse config file {path}: values nest deeper than {MAX_NESTING} levels") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of sections")
    if _nests_deeper(data, MAX_NESTING):
        raise ConfigError(f"config file {path}: values nest deeper than {MAX_NESTING} levels")
    for name, field in Config.model_fields.items():
        if is_section(field.annotation) and name in data and not isinstance(data[name], dict):
            raise ConfigError(f"{path}: {name} must be a table of fields, got {short_repr(data[name])}")
    env_id = data.get("env", {}).get("id")
    if env_id is not None and not isinstance(env_id, str):
        raise ConfigError(f"{path}: env.id must be a string, got {short_repr(env_id)}")
    return data
