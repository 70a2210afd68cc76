"""The commands that share a trained policy: `export` (a Hub-ready folder) and `push` (that
folder uploaded to the Hugging Face Hub). Everything they use is imported when they run, so that
`distdqn --help` imports none of it."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _export(args: argparse.Namespace, destination: Path) -> str:
    """Export `args.run` (a run directory, its `--checkpoint`; or a checkpoint) to `destination`,
    print what was written, and return the env id."""
    from distdqn.cli.commands import _checked
    from distdqn.storage.checkpoint import load_checkpoint, online_weights
    from distdqn.storage.object_store import local_checkpoint, run_checkpoint
    from distdqn.tools.export import ExportOptions, export_policy

    options = ExportOptions(args.episodes, args.seed, args.video, getattr(args, "force", False))
    chosen = run_checkpoint(args.run, args.checkpoint)
    source = chosen if chosen is not None else args.run
    with local_checkpoint(source) as directory:
        checkpoint = load_checkpoint(directory)
    config = _checked(checkpoint.config, args, source, runs_here=False)
    counters = checkpoint.state.get("counters")
    steps = counters.get("env_steps") if isinstance(counters, dict) else None
    started = time.perf_counter()
    exported = export_policy(
        config,
        online_weights(checkpoint),
        destination,
        options,
        source=str(source),
        checkpoint=args.checkpoint if chosen is not None else str(source),
        trained_steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
    )
    scores = exported.scores
    print(
        f"exported {source} to {destination} ({exported.bytes / 1024:.0f} KiB, {time.perf_counter() - started:.1f} s): "
        f"return {scores.mean_return:.2f} +/- {scores.std_return:.2f} over {len(scores.returns)} episodes"
    )
    if exported.video_note is not None:
        print(f"distdqn: {exported.video_note}", file=sys.stderr)
    return config.env.id


def command_export(args: argparse.Namespace) -> int:
    _export(args, args.dir)
    return 0


def command_push(args: argparse.Namespace) -> int:
    from distdqn.storage.object_store import is_remote
    from distdqn.tools.export import is_exported, read_exported
    from distdqn.tools.hub import check_repo_id, push_folder

    check_repo_id(args.repo)  # before an export that takes a while
    if not is_remote(args.run) and is_exported(Path(args.run)):
        config, _ = read_exported(Path(args.run), args.allow_import, "--allow-import")  # what is pushed loads back
        url = push_folder(Path(args.run), args.repo, args.private, args.token, f"Upload DQN agent for {config.env.id}")
    else:
        with tempfile.TemporaryDirectory(prefix="distdqn-push-") as temporary:
            folder = Path(temporary) / "model"
            env_id = _export(args, folder)
            url = push_folder(folder, args.repo, args.private, args.token, f"Upload DQN agent for {env_id}")
    print(f"pushed to {args.repo}: {url}")
    return 0
