"""`distdqn config`: the config a run would get, and the packaged presets it starts from, so that
a config can be read and edited before a run rather than looked up in the source."""

from __future__ import annotations

import argparse

from distdqn.config import config_to_toml, packaged_presets, resolve_config


def command_config(args: argparse.Namespace) -> int:
    if args.config_command == "show":
        print(config_to_toml(resolve_config(args.env, args.config, args.overrides)), end="")
    else:
        print_presets()
    return 0


def print_presets() -> None:
    """One row per preset: its file, the env ids that start from it, the first sentence of its comment."""
    rows = [("preset", "env ids", "description")] + [tuple(preset) for preset in packaged_presets()]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    for name, env_ids, description in rows:
        print(f"{name:<{widths[0]}}  {env_ids:<{widths[1]}}  {description}")
    print("`distdqn config show --env ID` prints the whole config a preset gives, with the defaults under it.")
