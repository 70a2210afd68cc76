"""The `distdqn` command: train, resume, evaluate and share.

Any `UserError` (bad config value, unknown env, missing checkpoint...) becomes one line on
stderr and exit code 2, before anything on disk is touched; so does a package that only an extra
installs (`distdqn.extras`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Callable

from distdqn.cli.flags import EXIT_USAGE, build_parser
from distdqn.errors import UserError
from distdqn.extras import extra_line

COMMAND_MODULES = {
    "train": "distdqn.cli.commands",
    "evaluate": "distdqn.cli.commands",
    "play": "distdqn.cli.commands",
    "plan": "distdqn.cli.commands",
    "k8s": "distdqn.cli.commands",
    "plot": "distdqn.cli.commands",
    "compare": "distdqn.cli.commands",
    "tune": "distdqn.cli.commands",
    "upload": "distdqn.cli.commands",
    "export": "distdqn.cli.share_commands",
    "push": "distdqn.cli.share_commands",
    "config": "distdqn.cli.config_commands",
}
"""Where each command's `command_NAME` function is. A module is imported only once its command is
parsed, so that `distdqn --help` imports none of what the commands need (torch, gymnasium, Ray)."""


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    return getattr(importlib.import_module(COMMAND_MODULES[name]), f"command_{name}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _command(args.command)(args)
    except UserError as error:
        print(f"distdqn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as error:
        line = extra_line(error)
        if line is None:
            raise
        print(f"distdqn: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"distdqn: error: the disk is full (writing {error.filename})", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("distdqn: interrupted", file=sys.stderr)
        return 130
