"""The one typed config tree, its presets, file loading and `--set` overrides.

Every field has a docstring, from which the docs' config reference is built
(docs/hooks/config_reference.py). Models are frozen and forbid unknown keys, so a typo in a file
or an override fails with the field's name, and with the fields it was probably meant to be
(`suggest_field`, which also knows Stable-Baselines3's and CleanRL's names: `learning_rate` is
`algorithm.lr`).

One job a module, each importing only those above it here:

- `sections`: the sections, each checked on its own (`EnvConfig`, `PlacementConfig`, ...);
- `tree`: `Config`, the checks that span sections, and how the replay splits into lanes;
- `messages`: values quoted short, and unknown keys answered with "did you mean";
- `files`: TOML and YAML read within bounds;
- `written`: the `[distdqn]` table that makes a written config load back field for field;
- `presets`: the packaged presets, which one an env id starts from and what each is for;
- `resolve`: defaults, preset, file and overrides made into one validated `Config`.

The names the rest of distdqn uses are imported here, so that it imports `distdqn.config`.
"""

from distdqn.config.files import YamlRefused, load_yaml, read_config_file
from distdqn.config.messages import COMMON_NAMES, field_paths, short_repr, short_text, suggest_field
from distdqn.config.presets import Preset, is_atari_id, packaged_presets, preset_for
from distdqn.config.resolve import (
    build_config,
    load_config_toml,
    merge_fields,
    override_config,
    resolve_config,
    update_config,
)
from distdqn.config.sections import (
    INT64_MAX,
    AlgorithmConfig,
    CheckpointConfig,
    EnvConfig,
    EvaluationConfig,
    LoggingConfig,
    NetworkConfig,
    PlacementConfig,
    ProgressMode,
    ReplayConfig,
    RoleResources,
)
from distdqn.config.tree import Config, lane_capacity, reachable_replay_size, shard_lanes
from distdqn.config.written import config_to_toml

__all__ = [
    "COMMON_NAMES",
    "INT64_MAX",
    "AlgorithmConfig",
    "CheckpointConfig",
    "Config",
    "EnvConfig",
    "EvaluationConfig",
    "LoggingConfig",
    "NetworkConfig",
    "PlacementConfig",
    "Preset",
    "ProgressMode",
    "ReplayConfig",
    "RoleResources",
    "YamlRefused",
    "build_config",
    "config_to_toml",
    "field_paths",
    "is_atari_id",
    "lane_capacity",
    "load_config_toml",
    "load_yaml",
    "merge_fields",
    "override_config",
    "packaged_presets",
    "preset_for",
    "reachable_replay_size",
    "read_config_file",
    "resolve_config",
    "shard_lanes",
    "short_repr",
    "short_text",
    "suggest_field",
    "update_config",
]
