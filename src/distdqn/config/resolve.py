"""A config from its layers: defaults, the env's preset, a file, `--set` overrides, then
validation into one `Config` that names the bad field and value on failure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from distdqn.config.files import YamlRefused, load_yaml, read_config_file
from distdqn.config.messages import format_validation_error, short_repr, suggest_field
from distdqn.config.presets import preset_for
from distdqn.config.sections import EnvConfig, is_section
from distdqn.config.tree import Config
from distdqn.config.written import take_written_table
from distdqn.errors import ConfigError


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (1e-3, true, [64, 64])."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key.path=value, got {short_repr(assignment)}")
    parts = key.strip().split(".")
    fields: dict[str, Any] = Config.model_fields
    node = data
    for depth, part in enumerate(parts):
        if part not in fields:
            raise ConfigError(
                f"--set {short_repr(key)}: unknown field {short_repr('.'.join(parts[: depth + 1]))}"
                + suggest_field(key)
            )
        annotation = fields[part].annotation
        section = is_section(annotation)
        if depth == len(parts) - 1:
            if section:
                raise ConfigError(f"--set {short_repr(key)}: {short_repr(key)} is a section; set one of its fields")
            break
        if not section:
            raise ConfigError(f"--set {short_repr(key)}: {short_repr('.'.join(parts[: depth + 1]))} has no fields")
        node = node.setdefault(part, {})
        fields = annotation.model_fields
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except YamlRefused as error:
        raise ConfigError(f"--set {short_repr(key)}: {error}") from None
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more digits than Python converts
        value = raw
    node[parts[-1]] = value


def _defaults() -> dict[str, Any]:
    """Every default spelled out, so that a partial section keeps its siblings' defaults
    (placement.evaluator's num_cpus is not RoleResources' own default)."""
    return Config().model_dump(mode="json")


def merge_fields(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section (an env's kwargs and a role's resources are replaced whole)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("kwargs", "resources"):
            merged[key] = merge_fields(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(
    env_id: str | None = None,
    config_file: Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    fields: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the env's preset, then the file, then `fields` (a nested dict, as the
    Python API's arguments give), then `--set` overrides, then validation.

    The preset is chosen by the env id from the command line, else the file's `env.id`. A
    resolved file (one `config_to_toml` wrote) gets no preset under it; see `distdqn.config.written`.
    """
    origin = str(config_file) if config_file else "config"
    file_data, resolved = take_written_table(read_config_file(config_file) if config_file else {}, origin)
    chosen_id = env_id or file_data.get("env", {}).get("id") or EnvConfig().id
    # a resolved file (a run's config.toml) holds every field: no preset goes under it
    data = _defaults() if resolved else merge_fields(_defaults(), preset_for(chosen_id))
    data = merge_fields(data, file_data)
    data = merge_fields(data, {"env": {"id": chosen_id}})
    data = merge_fields(data, dict(fields or {}))
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, origin=origin)


def override_config(config: Config, overrides: tuple[str, ...] | list[str], origin: str) -> Config:
    """A copy of `config` with `--set` style overrides applied and validated."""
    data = config.model_dump(mode="json")
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, origin=origin)


def update_config(config: Config, fields: Mapping[str, Any], origin: str) -> Config:
    """A copy of `config` with `fields` (a nested dict) merged in and validated."""
    return build_config(merge_fields(config.model_dump(mode="json"), dict(fields)), origin=origin)


def build_config(data: dict[str, Any], origin: str = "config") -> Config:
    """Validate a nested dict into a Config, naming the bad field and value on failure. A dict
    read from a written config (with its `[distdqn]` table) gives back the config written."""
    data, resolved = take_written_table(data, origin)
    if resolved:
        data = merge_fields(_defaults(), data)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, origin)) from None


def load_config_toml(path: Path) -> Config:
    """Load a resolved config written by `config_to_toml` (a run's or a checkpoint's); a file
    written before the `[distdqn]` table is read as it was then, without a preset."""
    return build_config(read_config_file(path), origin=str(path))
