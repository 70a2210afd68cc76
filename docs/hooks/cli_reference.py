"""MkDocs hook: the CLI reference, generated from `distdqn.cli.flags.build_parser()` at every
build, so that it cannot drift from the code.

A page that holds the line `<!-- cli-reference -->` gets, in its place, one section per command
(and per subcommand of a command that has them): its usage line and a table of its arguments with
their help text and defaults, as `distdqn COMMAND --help` prints them.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- cli-reference -->"
WIDTH = 96


def _build_parser() -> argparse.ArgumentParser:
    """The checkout's own parser, whatever the venv's editable install points at."""
    sys.path.insert(0, str(ROOT / "src"))
    from distdqn.cli.flags import build_parser

    return build_parser()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        invocation = formatter._format_action_invocation(action)
        text = formatter._expand_help(action) if action.help else ""
        if action.required and action.option_strings:
            text = f"required. {text}"
        rows.append(f"| `{_cell(invocation)}` | {_cell(text)} |")
    if not rows:
        return []
    return ["| argument | meaning |", "|---|---|", *rows, ""]


def _command(parser: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)
    lines = [f"{'#' * level} {parser.prog}", ""]
    if summary:
        lines += [summary[:1].upper() + summary[1:] + ".", ""]
    lines += ["```", parser.format_usage().strip(), "```", ""]
    lines += _arguments(parser)
    for _name, help_text, sub in _subcommands(parser):
        lines += _command(sub, help_text, level + 1)
    return lines


def reference() -> str:
    """The generated Markdown: a section per command of `distdqn`, in `--help`'s order."""
    parser = _build_parser()
    lines: list[str] = []
    for _name, help_text, sub in _subcommands(parser):
        lines += _command(sub, help_text, 2)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
