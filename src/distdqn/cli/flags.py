"""The `distdqn` command line: its commands, their flags, and the config overrides the flags stand for."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from distdqn import __version__
from distdqn.errors import UserError
from distdqn.seeding import EVAL_SEED
from distdqn.storage.locations import location

EXIT_USAGE = 2
"""The exit code of a refusal: a bad flag, config value or file."""


def _add_config_sources(parser: argparse.ArgumentParser) -> None:
    """Where a config comes from, shared by `train` and `config show` so that show prints what train runs."""
    parser.add_argument("--env", help="Gymnasium id; picks the packaged preset (default CartPole-v1)")
    parser.add_argument("--config", type=Path, help="TOML or YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set algorithm.lr=5e-4 (repeatable)",
    )


def _add_placement_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=["inline", "threads", "ray"], help="where roles run (placement.runtime)")
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this Ray cluster (placement.address; default: RAY_ADDRESS, else an embedded one)",
    )


def placement_overrides(args: argparse.Namespace) -> list[str]:
    """`--runtime` and `--address` as overrides. An address is a Ray cluster's, so it implies
    `--runtime ray` unless the command line names another runtime, which is refused."""
    from distdqn.config import short_repr  # here, not at the top: `distdqn --help` needs no config

    overrides = []
    if args.runtime is not None:
        overrides.append(f"placement.runtime={args.runtime}")
    if args.address is not None:
        typed = [  # --runtime is applied after --set, so it wins
            o.partition("=")[2].strip()
            for o in getattr(args, "overrides", [])
            if o.partition("=")[0].strip() == "placement.runtime"
        ] + [args.runtime]
        named = next((runtime for runtime in reversed(typed) if runtime), None)
        if named is None:
            overrides.append("placement.runtime=ray")
        elif named != "ray":
            raise UserError(
                f"--address {short_repr(args.address)} joins a Ray cluster, which the {short_repr(named)} "
                "runtime does not use; drop --address or use --runtime ray"
            )
        overrides.append(f"placement.address={args.address}")
    return overrides


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for config fields of a run, shared by `train` and `k8s`."""
    parser.add_argument("--seed", type=int, help="seed for every random number generator")
    parser.add_argument("--stop-return", type=float, help="stop at the first evaluation with this mean return")
    parser.add_argument("--total-steps", type=int, help="env steps to train for")


def run_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.total_steps is not None:
        overrides.append(f"total_steps={args.total_steps}")
    if args.stop_return is not None:
        overrides.append(f"stop_return={args.stop_return}")
    return overrides


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of any command that runs long enough to show progress."""
    parser.add_argument(
        "--quiet", action="store_true", help="no progress on stderr (logging.progress=none); errors and summary stay"
    )


def output_overrides(args: argparse.Namespace) -> list[str]:
    return ["logging.progress=none"] if args.quiet else []


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in our one-line form (its own prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"distdqn: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="distdqn", description="Train and evaluate DQN agents.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train an agent (or resume a run)",
        description="Train an agent, or resume a run. Its config is the defaults, then the env's preset, then "
        "--config, then --set and the flags.",
        epilog="`distdqn config show --env ID [--config FILE] [--set KEY=VALUE]` prints the config these flags "
        "resolve to, as a TOML file --config loads; `distdqn config presets` lists the packaged presets.",
    )
    _add_config_sources(train)
    _add_run_flags(train)
    train.add_argument(
        "--run-dir",
        type=location,
        help="where run files go: a path or a URI such as s3://bucket/run (default runs/ENV-sSEED-TIME)",
    )
    _add_placement_flags(train)
    _add_output_flags(train)
    _add_allow_import(train)
    train.add_argument(
        "--resume",
        type=location,
        metavar="RUN_DIR",
        help="continue RUN_DIR from checkpoints/latest (counters, weights, optimizer, schedules)",
    )

    plan = commands.add_parser("plan", help="print where each role of a config would run")
    plan.add_argument("--env", help="Gymnasium id (picks the preset)")
    plan.add_argument("--config", type=Path, help="TOML or YAML config file")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _add_placement_flags(plan)
    _add_allow_import(plan)

    k8s = commands.add_parser("k8s", help="print KubeRay manifests (RayJob or RayCluster) made from the placement")
    k8s.add_argument("--env", help="Gymnasium id (picks the preset)")
    k8s.add_argument("--config", type=Path, help="TOML or YAML config file")
    k8s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _add_run_flags(k8s)
    k8s.add_argument("--runtime", choices=["inline", "threads", "ray"], help="ray (the only runtime of a RayCluster)")
    k8s.add_argument("--image", required=True, help="container image with distdqn and Ray, for every pod")
    k8s.add_argument("--kind", choices=["rayjob", "raycluster"], default="rayjob", help="default rayjob")
    k8s.add_argument("--name", help="name of the RayJob/RayCluster (default distdqn-ENV)")
    k8s.add_argument("--namespace", help="namespace of every object (default: kubectl's current one)")
    k8s.add_argument(
        "--storage", metavar="URI", help="run directory, e.g. s3://bucket/run (default /tmp/run on the head pod)"
    )
    k8s.add_argument(
        "--token",
        choices=["random", "external"],
        default="random",
        help="random: emit the token Secret with a fresh token; external: you create the Secret",
    )
    k8s.add_argument(
        "--resume", action="store_true", help="continue the run in --storage (a job made again after one ended)"
    )
    k8s.add_argument("--open-dashboard", action="store_true", help="RayCluster: run the dashboard and job API")
    k8s.add_argument("--actor-groups", type=int, default=1, metavar="N", help="split actors over N worker groups")
    k8s.add_argument("--pod-cpus", type=int, default=16, metavar="N", help="most Ray CPUs of actors in one pod")
    k8s.add_argument(
        "--node-selector",
        nargs=2,
        action="append",
        default=[],
        metavar=("GROUP", "KEY=VALUE"),
        help="node selector of a group (head, learners, shards, actors[-i], evaluator; repeatable)",
    )
    k8s.add_argument(
        "--toleration",
        nargs=2,
        action="append",
        default=[],
        metavar=("GROUP", "KEY[=VALUE]:EFFECT"),
        help="toleration of a group (repeatable)",
    )
    k8s.add_argument("--service-account", help="service account of every pod")
    k8s.add_argument(
        "--no-network-policy",
        dest="network_policy",
        action="store_false",
        help="leave out the NetworkPolicy that admits only the cluster's own pods (and KubeRay's operator) "
        "to the pods' ports: for a cluster whose network plugin enforces none",
    )
    _add_allow_import(k8s)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint's greedy policy")
    _add_checkpoint_arguments(evaluate)
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    evaluate.add_argument(
        "--seed", type=int, default=EVAL_SEED, help=f"seed of the evaluation envs (default {EVAL_SEED}, as play's)"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_allow_import(evaluate)

    plot = commands.add_parser("plot", help="draw eval-return curves of runs, groups of runs or a tune directory")
    plot.add_argument(
        "runs",
        nargs="+",
        type=location,
        metavar="RUN_DIR",
        help="run directories, or one tune directory (paths or URIs)",
    )
    plot.add_argument("--out", type=Path, required=True, metavar="FILE", help="the figure: .png, .svg or .pdf")
    plot.add_argument("--x", choices=["env_steps", "wall_s"], default="env_steps", help="x axis (default env_steps)")
    plot.add_argument(
        "--group", action="append", metavar="NAME=GLOB", help="one curve for the runs matching GLOB (repeatable)"
    )
    plot.add_argument(
        "--group-by", action="append", metavar="KEY", help="one curve per value of a config field, e.g. algorithm.lr"
    )
    plot.add_argument(
        "--band", choices=["ci95", "minmax"], default="ci95", help="a group's shading: bootstrap 95%% CI or min-max"
    )
    plot.add_argument("--title", help="figure title")

    compare = commands.add_parser("compare", help="one table row per run: final, best, time to a threshold, speed")
    compare.add_argument(
        "runs", nargs="+", type=location, metavar="RUN_DIR", help="run or tune directories (paths or URIs)"
    )
    compare.add_argument("--threshold", type=float, metavar="R", help="report steps and seconds to eval return R")
    compare.add_argument("--json", action="store_true", help="print one JSON array")
    upload = commands.add_parser("upload", help="upload a local run directory (a kept staging directory) to a URI")
    upload.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the local run directory")
    upload.add_argument("uri", metavar="URI", help="where the run lives, e.g. s3://bucket/run")
    _add_tune_parser(commands)
    _add_config_parser(commands)
    play = commands.add_parser(
        "play", help="watch a checkpoint's greedy policy, as a GIF or MP4 (and a maze's value map)"
    )
    _add_checkpoint_arguments(play)
    play.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    play.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED,
        help=f"episode k is seeded as the evaluator's env k (default {EVAL_SEED}, as evaluate's)",
    )
    play.add_argument("--gif", type=Path, metavar="FILE.gif", help="write the episodes' rendered frames to this GIF")
    play.add_argument(
        "--map", type=Path, metavar="FILE.png", help="maze: write its value map here (default with --gif: STEM-map.png)"
    )
    play.add_argument(
        "--video", type=Path, metavar="FILE.mp4", help="write the episodes' rendered frames to this MP4 (H.264) video"
    )
    play.add_argument(
        "--fps", type=float, help="GIF and video frames per second (default: the env's render_fps, at most 50)"
    )
    play.add_argument("--max-steps", type=int, default=1000, help="cut episodes after this many steps (default 1000)")
    _add_allow_import(play)
    _add_share_parsers(commands)
    return parser


def _add_export_flags(parser: argparse.ArgumentParser) -> None:
    """What `export` and `push` (which exports a run first) take: the checkpoint, its evaluation, the video."""
    parser.add_argument(
        "--checkpoint", choices=["best", "latest"], default="best", help="a run's checkpoint to export (default best)"
    )
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes for the model card (default 10)")
    parser.add_argument(
        "--seed", type=int, default=EVAL_SEED, help=f"seed of the evaluation envs (default {EVAL_SEED}, as evaluate's)"
    )
    parser.add_argument(
        "--video",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="record one episode as replay.mp4 (default on; skipped with a note where the env cannot render)",
    )
    _add_allow_import(parser)


def _add_share_parsers(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a run's policy as a Hugging Face Hub model folder (weights, config, model card, video)"
    )
    export.add_argument(
        "run", type=location, metavar="RUN_DIR|CHECKPOINT_DIR", help="a run (its --checkpoint) or a checkpoint"
    )
    export.add_argument("dir", type=Path, metavar="DIR", help="the folder to write (new or empty)")
    export.add_argument("--force", action="store_true", help="replace DIR even if it is not empty")
    _add_export_flags(export)
    push = commands.add_parser("push", help="upload a run's policy (exported first) or an exported folder to the Hub")
    push.add_argument(
        "run", type=location, metavar="RUN_DIR|EXPORT_DIR", help="a run, a checkpoint, or a folder `export` wrote"
    )
    push.add_argument(
        "--repo", required=True, metavar="ID", help="Hub model repository, NAMESPACE/NAME (made if missing)"
    )
    push.add_argument("--private", action="store_true", help="make the repository private (when push creates it)")
    push.add_argument(
        "--token",
        help="Hub token (default: HF_TOKEN, else `hf auth login`'s, which stay out of ps and shell history)",
    )
    _add_export_flags(push)


def _add_allow_import(parser: argparse.ArgumentParser) -> None:
    """`--allow-import`, on every command that makes an env (see `distdqn.config.trust`)."""
    parser.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="let an env id `MODULE:Name` read from a file (config, checkpoint, run) import MODULE (repeatable)",
    )


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=location,
        metavar="RUN_DIR|CHECKPOINT_DIR",
        help="a run (its checkpoints/best) or a checkpoint such as RUN_DIR/checkpoints/latest; a path or URI",
    )
    parser.add_argument("--latest", action="store_true", help="a run's checkpoints/latest instead of its best")


def _add_tune_parser(commands: Any) -> None:
    tune = commands.add_parser(
        "tune", help="search hyperparameters with Ray Tune (PBT, PB2, ASHA or random search); each trial is a run"
    )
    tune.add_argument("--env", help="Gymnasium id; picks the packaged preset (default CartPole-v1)")
    tune.add_argument("--config", type=Path, help="TOML or YAML config file every trial starts from")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tune.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=KIND(ARGS)",
        help="a searched field: uniform(a,b), loguniform(a,b), randint(a,b) (both ends included), "
        "choice(v,...) or grid(v,...) (repeatable)",
    )
    tune.add_argument(
        "--start",
        dest="starts",
        action="append",
        default=[],
        metavar="KEY=VALUE[;KEY=VALUE]",
        help="values of one of the first trials (the others are drawn); repeatable",
    )
    tune.add_argument("--scheduler", choices=["pbt", "pb2", "asha", "random"], default="pbt", help="default pbt")
    tune.add_argument("--trials", type=int, default=4, help="trials (samples of the space; default 4)")
    tune.add_argument("--total-steps", type=int, help="env steps of each trial")
    tune.add_argument("--interval", type=int, help="env steps between reports (default total-steps / 10)")
    tune.add_argument("--seed", type=int, help="base seed: trial i runs with a seed derived from it and i")
    tune.add_argument("--run-dir", type=Path, help="tune directory (default runs/tune-ENV-TIME)")
    tune.add_argument("--address", metavar="HOST:PORT", help="Ray cluster to run trials on (default: embedded)")
    tune.add_argument("--cpus", type=int, help="CPUs of the embedded Ray cluster (default: all of this machine's)")
    tune.add_argument("--max-concurrent", type=int, help="trials running at once (default: as CPUs allow)")
    tune.add_argument(
        "--resample-probability", type=float, default=0.25, help="pbt: chance an explored value is redrawn (0.25)"
    )
    tune.add_argument(
        "--synch", dest="synchronous", action="store_true", help="pbt/pb2: decide when all trials reach an interval"
    )
    _add_output_flags(tune)
    _add_allow_import(tune)


def _add_config_parser(commands: Any) -> None:
    config = commands.add_parser("config", help="print a resolved config, or list the packaged presets")
    actions = config.add_subparsers(dest="config_command", required=True)
    show = actions.add_parser(
        "show",
        help="print the config that train would run with, as TOML that --config loads back",
        description="Print the resolved config (defaults, the env's preset, --config, then --set) as TOML; "
        "saved to a file, `distdqn train --config FILE` runs with exactly it.",
    )
    _add_config_sources(show)
    actions.add_parser("presets", help="list the packaged presets, the env ids each is for, and what it sets up")


def overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + placement_overrides(args) + output_overrides(args) + run_overrides(args)
