"""The `distdqn` command: train, resume, evaluate and share.

Any `UserError` (bad config value, unknown env, missing checkpoint...) becomes one line on
stderr and exit code 2, before anything on disk is touched.
"""

from __future__ import annotations

import errno
import sys

from distdqn.cli.commands import (
    command_compare,
    command_evaluate,
    command_k8s,
    command_plan,
    command_play,
    command_plot,
    command_train,
    command_tune,
    command_upload,
)
from distdqn.cli.flags import EXIT_USAGE, build_parser
from distdqn.cli.share_commands import command_export, command_push
from distdqn.errors import UserError

COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "play": command_play,
    "plan": command_plan,
    "k8s": command_k8s,
    "plot": command_plot,
    "compare": command_compare,
    "tune": command_tune,
    "upload": command_upload,
    "export": command_export,
    "push": command_push,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"distdqn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"distdqn: error: the disk is full (writing {error.filename})", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("distdqn: interrupted", file=sys.stderr)
        return 130
