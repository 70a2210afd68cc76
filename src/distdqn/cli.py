"""The `distdqn` command: train, resume and evaluate.

Any `UserError` (bad config value, unknown env, missing checkpoint...) becomes one line on
stderr and exit code 2, before anything on disk is touched.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from distdqn.config import Config, is_atari_id, override_config, resolve_config, short_repr
from distdqn.devices import check_devices
from distdqn.errors import CheckpointError, UserError
from distdqn.seeding import EVAL_SEED, stream_seed
from distdqn.storage.checkpoint import load_checkpoint
from distdqn.storage.object_store import local_checkpoint, location, run_checkpoint
from distdqn.types import EvalResult, Weights

EXIT_USAGE = 2


def _add_placement_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=["inline", "threads", "ray"], help="where roles run (placement.runtime)")
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this Ray cluster (placement.address; default: RAY_ADDRESS, else an embedded one)",
    )


def _placement_overrides(args: argparse.Namespace) -> list[str]:
    """`--runtime` and `--address` as overrides. An address is a Ray cluster's, so it implies
    `--runtime ray` unless the command line names another runtime, which is refused."""
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


def _run_overrides(args: argparse.Namespace) -> list[str]:
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


def _output_overrides(args: argparse.Namespace) -> list[str]:
    return ["logging.progress=none"] if args.quiet else []


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in our one-line form (its own prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"distdqn: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="distdqn", description="Train and evaluate DQN agents.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an agent (or resume a run)")
    train.add_argument("--env", help="Gymnasium id; picks the packaged preset (default CartPole-v1)")
    train.add_argument("--config", type=Path, help="TOML or YAML config file")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set algorithm.lr=5e-4 (repeatable)",
    )
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
    play = commands.add_parser("play", help="watch a checkpoint's greedy policy, as a GIF (and a maze's value map)")
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
    play.add_argument("--fps", type=float, help="GIF frames per second (default: the env's render_fps, at most 50)")
    play.add_argument("--max-steps", type=int, default=1000, help="cut episodes after this many steps (default 1000)")
    _add_allow_import(play)
    return parser


def _add_allow_import(parser: argparse.ArgumentParser) -> None:
    """`--allow-import`, on every command that makes an env (see `_refuse_unrequested_imports`)."""
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


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + _placement_overrides(args) + _output_overrides(args) + _run_overrides(args)


def _default_run_dir(config: Config) -> Path:
    name = config.env.id.replace("/", "_")
    return Path("runs") / f"{name}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _typed_env_ids(args: argparse.Namespace) -> list[Any]:
    """The env ids typed on the command line: `--env`, and `--set env.id=...` read as `--set`
    reads a value."""
    typed: list[Any] = [args.env] if getattr(args, "env", None) else []
    for assignment in getattr(args, "overrides", []):
        key, _, raw = assignment.partition("=")
        if key.strip() != "env.id":
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError):
            value = raw
        typed.append(value)
    return typed


def _refuse_unrequested_imports(config: Config, args: argparse.Namespace, origin: Path | str | None) -> None:
    """The one rule of every command that makes an env (train, evaluate, play, plan, tune, k8s),
    applied before any env is made: an env id `module:Name` makes gymnasium import `module`.
    Typed on the command line (`--env`, `--set env.id=`) that is the user's choice; read from a
    file (a shared config, a downloaded run or checkpoint) it would let the file's author run
    code, so it needs `--allow-import module`."""
    module, sep, _ = config.env.id.rpartition(":")
    if not sep or module in args.allow_import or config.env.id in _typed_env_ids(args):
        return
    flag = shlex.quote(module) if module.isprintable() else short_repr(module)
    where = str(origin or "the config")
    where = where if where.isprintable() else short_repr(where)
    raise UserError(
        f"env.id {short_repr(config.env.id)} from {where} would import module {short_repr(module)}; "
        f"pass --allow-import {flag} if you trust it"
    )


def _resolve(args: argparse.Namespace, overrides: list[str], resolve: Callable[..., Config] = resolve_config) -> Config:
    """The command's config (defaults, preset, `--config`, overrides), its env id checked by
    `_refuse_unrequested_imports` before anything can make the env."""
    config = resolve(args.env, args.config, overrides)
    _refuse_unrequested_imports(config, args, origin=args.config)
    return config


def _command_train(args: argparse.Namespace) -> int:
    from distdqn.run.train import resumable_config, resume, train

    if args.resume is not None:
        if args.env or args.config or args.run_dir or args.seed is not None:
            raise UserError(
                "--resume takes the run's own config; only --set, --total-steps, --stop-return, "
                "--runtime, --address and --quiet may change it"
            )
        saved, origin = resumable_config(args.resume)
        config = override_config(saved, _overrides(args), origin="--resume")
        _refuse_unrequested_imports(config, args, origin=origin)
        check_devices(config)
        result = resume(args.resume, config)
    else:
        config = _resolve(args, _overrides(args))
        check_devices(config)
        result = train(config, args.run_dir or _default_run_dir(config))
    counters = result.counters
    summary = (
        f"run {result.run_dir}: {counters.env_steps} env steps, {counters.updates} updates, {counters.wall_s:.1f} s"
    )
    if counters.best_eval_return is not None:
        summary += f", best eval return {counters.best_eval_return:.1f}"
    if counters.solved_at_env_steps is not None:
        summary += (
            f", reached {config.stop_return} at {counters.solved_at_env_steps} env steps "
            f"({counters.solved_at_wall_s:.1f} s)"
        )
    print(summary)
    if result.stopped_by is not None:
        print(f"stopped by {result.stopped_by}; `distdqn train --resume {result.run_dir}` continues", file=sys.stderr)
    return 0


MAX_EVALUATE_EPISODES = 100_000
EVALUATE_BATCH = 64
"""Episodes played side by side, one env each: memory stays flat however many are asked for."""


def _evaluate_batch(config: Config, weights: Weights, episodes: int, seed: int, checkpoint: Path | str) -> EvalResult:
    from distdqn.roles import Evaluator

    evaluator = Evaluator(
        config.env, config.network, episodes, config.evaluation.epsilon, config.evaluation.max_episode_steps
    )
    try:
        return evaluator.evaluate(weights, seed)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {checkpoint}: {error}") from None
    finally:
        evaluator.env.close()


def _chosen_checkpoint(args: argparse.Namespace) -> Path | str:
    """The checkpoint `evaluate` and `play` read: `args.checkpoint` itself, or for a run directory
    its `checkpoints/best` (`checkpoints/latest` with `--latest`), as rl-zoo's `--load-best`."""
    chosen = run_checkpoint(args.checkpoint, "latest" if args.latest else "best")
    if chosen is not None:
        return chosen
    if args.latest:
        raise UserError(f"--latest picks a run directory's checkpoints/latest; {args.checkpoint} is no run directory")
    return args.checkpoint


def _load_online_weights(args: argparse.Namespace, source: Path | str) -> tuple[Config, Weights]:
    """The config and online network of the checkpoint at `source` (a path or URI), once its
    env id is known not to import a module the user did not allow."""
    with local_checkpoint(source) as directory:
        checkpoint = load_checkpoint(directory)
    online = {k.removeprefix("online."): v.numpy() for k, v in checkpoint.tensors.items() if k.startswith("online.")}
    _refuse_unrequested_imports(checkpoint.config, args, origin=source)
    return checkpoint.config, Weights(0, online)


def _command_evaluate(args: argparse.Namespace) -> int:
    if not 1 <= args.episodes <= MAX_EVALUATE_EPISODES:
        raise UserError(f"--episodes must be between 1 and {MAX_EVALUATE_EPISODES}, got {args.episodes}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
    source = _chosen_checkpoint(args)
    config, weights = _load_online_weights(args, source)
    returns, lengths = [], []
    for batch, start in enumerate(range(0, args.episodes, EVALUATE_BATCH)):
        # the first batch takes --seed itself, so a recorded evaluation (best's eval_seed) replays exactly
        seed = args.seed if batch == 0 else stream_seed(args.seed, "evaluator", 2, batch)
        result = _evaluate_batch(config, weights, min(EVALUATE_BATCH, args.episodes - start), seed, source)
        returns += result.returns.tolist()
        lengths += result.lengths.tolist()
    report = {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "episodes": len(returns),
        "length_mean": float(np.mean(lengths)),
        "returns": [float(r) for r in returns],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{config.env.id}: return {report['return_mean']:.2f} +/- {report['return_std']:.2f} "
            f"over {report['episodes']} episodes (mean length {report['length_mean']:.1f})"
        )
    return 0


def _command_tune(args: argparse.Namespace) -> int:
    from distdqn.tools.search_space import parse_param, parse_start
    from distdqn.tools.tuning import TuneOptions, tune

    overrides = list(args.overrides)
    for flag, key in ((args.seed, "seed"), (args.total_steps, "total_steps")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    base = _resolve(args, overrides)
    if args.address is None and not os.environ.get("RAY_ADDRESS"):
        check_devices(base)  # trials run on this machine's embedded cluster
    for name, value, low in (
        ("--trials", args.trials, 1),
        ("--cpus", args.cpus, 1),
        ("--max-concurrent", args.max_concurrent, 1),
    ):
        if value is not None and value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    interval = args.interval if args.interval is not None else max(1, base.total_steps // 10)
    if interval < 1:
        raise UserError(f"--interval must be at least 1, got {interval}")
    if not 0.0 <= args.resample_probability <= 1.0:
        raise UserError(f"--resample-probability must be between 0 and 1, got {args.resample_probability}")
    name = base.env.id.replace("/", "_")
    options = TuneOptions(
        specs=tuple(parse_param(text) for text in args.params),
        scheduler=args.scheduler,
        trials=args.trials,
        interval=interval,
        run_dir=args.run_dir or Path("runs") / f"tune-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        starts=tuple(parse_start(text) for text in args.starts),
        resample_probability=args.resample_probability,
        synchronous=args.synchronous,
        max_concurrent=args.max_concurrent,
        cpus=args.cpus,
        address=args.address,
        quiet=args.quiet,
    )
    from distdqn.envs import env_spaces

    env_spaces(base.env)  # every scheduler's trials make it: an id none can make is one line here, not per trial
    summary = tune(base, options)
    values = " ".join(f"{key}={value}" for key, value in summary.best_params.items())
    print(
        f"tune {options.run_dir}: {summary.trials} trials, {summary.exploits} exploits; best {summary.best_trial} "
        f"eval return {summary.best_return:.1f} with {values}; config in {options.run_dir / 'best.toml'}"
    )
    for error in summary.errors:
        print(f"distdqn: trial {error}", file=sys.stderr)
    return 0


def _command_play(args: argparse.Namespace) -> int:
    from distdqn.tools.play import PlayOptions, play

    options = PlayOptions(args.episodes, args.seed, args.max_steps, args.gif, args.map, args.fps)
    source = _chosen_checkpoint(args)
    config, weights = _load_online_weights(args, source)
    play(config, weights, options, source=str(source))
    return 0


def _command_plan(args: argparse.Namespace) -> int:
    from distdqn.tools.plan import Node, assign, machine_cores, oversubscription, render, role_demands

    config = _resolve(args, args.overrides + _placement_overrides(args))
    check_devices(config)
    placement = config.placement
    roles = role_demands(placement)
    if placement.runtime != "ray":
        placed = {role.name: f"this process ({placement.runtime})" for role in roles}
    elif placement.address is None:
        from distdqn.runtime.ray import embedded_cluster_cpus

        cpus = embedded_cluster_cpus(placement)
        placed = assign(roles, [Node("embedded local cluster", {"CPU": float(cpus)})])
        warning = oversubscription(cpus, machine_cores())
        if warning is not None:
            print(f"distdqn: warning: {warning}", file=sys.stderr)
    else:
        from distdqn.runtime.ray import RayRuntime

        runtime = RayRuntime(placement)  # connects, checks the plan, starts no role
        try:
            placed = assign(roles, runtime.cluster_nodes())
        finally:
            runtime.shutdown()
    print(render(roles, placed))
    return 0


def _without_ale_banner(config: Config) -> None:
    """The ALE prints its banner ("A.L.E: Arcade Learning Environment (version ...)") on stderr
    whenever it makes an env; a command that makes one only to read its spaces shows it for
    nothing, so there the ALE's log level is raised to errors."""
    if not is_atari_id(config.env.id):
        return
    try:
        import ale_py
    except ImportError:
        return  # making the env names the missing package
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def _command_k8s(args: argparse.Namespace) -> int:
    from distdqn.tools.k8s import K8sOptions, render, resolve_k8s_config

    if args.runtime not in (None, "ray"):
        raise UserError(
            f"--runtime {args.runtime}: a RayCluster runs every role as a Ray actor on its pods; "
            "k8s takes --runtime ray or none"
        )
    config = _resolve(args, args.overrides + _run_overrides(args), resolve=resolve_k8s_config)
    _without_ale_banner(config)
    options = K8sOptions(
        image=args.image,
        kind=args.kind,
        name=args.name,
        namespace=args.namespace,
        storage=args.storage,
        resume=args.resume,
        token=args.token,
        open_dashboard=args.open_dashboard,
        actor_groups=args.actor_groups,
        pod_cpus=args.pod_cpus,
        node_selectors=tuple(map(tuple, args.node_selector)),
        tolerations=tuple(map(tuple, args.toleration)),
        service_account=args.service_account,
    )
    print(render(config, options), end="")
    return 0


def _command_plot(args: argparse.Namespace) -> int:
    from distdqn.tools.plots import plot

    plot(args.runs, args.out, args.x, args.group, args.group_by, args.band, args.title)
    print(f"wrote {args.out}")
    return 0


def _command_compare(args: argparse.Namespace) -> int:
    from distdqn.tools.compare import compare

    print(compare(args.runs, args.threshold, args.json))
    return 0


def _command_upload(args: argparse.Namespace) -> int:
    from distdqn.storage.object_store import upload_run

    pointers = upload_run(args.run_dir, args.uri)
    uri = args.uri.rstrip("/")
    named = ", ".join(f"{name} -> {version}" for name, version in pointers.items()) or "no checkpoints"
    print(f"uploaded {args.run_dir} to {uri} ({named}); `distdqn train --resume {uri}` goes on from there")
    return 0


COMMANDS = {
    "train": _command_train,
    "evaluate": _command_evaluate,
    "play": _command_play,
    "plan": _command_plan,
    "k8s": _command_k8s,
    "plot": _command_plot,
    "compare": _command_compare,
    "tune": _command_tune,
    "upload": _command_upload,
}


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
