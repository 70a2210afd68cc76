"""What each `distdqn` command does, on the objects the run, storage and tools layers provide."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from distdqn.cli.flags import overrides, placement_overrides, run_overrides
from distdqn.config import Config, is_atari_id, override_config, resolve_config
from distdqn.config.trust import refuse_unrequested_imports
from distdqn.devices import check_devices
from distdqn.errors import UserError
from distdqn.run.greedy import MAX_EPISODES, read_policy, score
from distdqn.run.run_dir import default_run_dir
from distdqn.storage.object_store import is_remote, run_checkpoint
from distdqn.types import Weights


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


def _checked(config: Config, args: argparse.Namespace, origin: Path | str | None, *, runs_here: bool) -> Config:
    """`config` once every command's checks pass, before anything is made from it: its env id
    imports no module the user did not allow (`refuse_unrequested_imports`) and, when `runs_here`
    (its learner trains on this machine), this machine has its devices (`check_devices`)."""
    refuse_unrequested_imports(config, args.allow_import, _typed_env_ids(args), origin, "--allow-import")
    if runs_here:
        check_devices(config)
    return config


def _resolve(
    args: argparse.Namespace,
    overrides: list[str],
    resolve: Callable[..., Config] = resolve_config,
    *,
    runs_here: bool = True,
) -> Config:
    """The command's config (defaults, preset, `--config`, overrides), `_checked`."""
    return _checked(resolve(args.env, args.config, overrides), args, args.config, runs_here=runs_here)


def command_train(args: argparse.Namespace) -> int:
    from distdqn.run.train import resumable_config, resume, train

    if args.resume is not None:
        if args.env or args.config or args.run_dir or args.seed is not None:
            raise UserError(
                "--resume takes the run's own config; only --set, --total-steps, --stop-return, "
                "--runtime, --address and --quiet may change it"
            )
        saved, origin = resumable_config(args.resume)
        config = _checked(override_config(saved, overrides(args), origin="--resume"), args, origin, runs_here=True)
        result = resume(args.resume, config)
    else:
        config = _resolve(args, overrides(args))
        result = train(config, args.run_dir or default_run_dir(config))
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


def _exported(location: Path | str) -> Path | None:
    """`location` when it is a folder `distdqn export` wrote (or a download of one)."""
    from distdqn.tools.export import is_exported

    return Path(location) if not is_remote(location) and is_exported(Path(location)) else None


def _chosen_checkpoint(args: argparse.Namespace) -> Path | str:
    """The checkpoint `evaluate` and `play` read: `args.checkpoint` itself (a checkpoint or an
    exported folder), or for a run directory its `checkpoints/best` (`checkpoints/latest` with
    `--latest`), as rl-zoo's `--load-best`."""
    exported = _exported(args.checkpoint) is not None
    chosen = None if exported else run_checkpoint(args.checkpoint, "latest" if args.latest else "best")
    if chosen is not None:
        return chosen
    if args.latest:
        what = "an exported model" if exported else "no run directory"
        raise UserError(f"--latest picks a run directory's checkpoints/latest; {args.checkpoint} is {what}")
    return args.checkpoint


def _load_online_weights(args: argparse.Namespace, source: Path | str) -> tuple[Config, Weights]:
    """The config and online network of the checkpoint (or exported folder) at `source` (a path
    or URI), once its env id is known not to import a module the user did not allow."""
    exported = _exported(source)
    if exported is not None:
        from distdqn.tools.export import read_exported

        return read_exported(exported, args.allow_import, "--allow-import")
    config, weights = read_policy(source)
    # evaluate and play run the network on the CPU, whatever placement.device says
    return _checked(config, args, source, runs_here=False), weights


def command_evaluate(args: argparse.Namespace) -> int:
    if not 1 <= args.episodes <= MAX_EPISODES:
        raise UserError(f"--episodes must be between 1 and {MAX_EPISODES}, got {args.episodes}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
    source = _chosen_checkpoint(args)
    config, weights = _load_online_weights(args, source)
    result = score(config, weights, args.episodes, args.seed, source)
    report = {
        "return_mean": float(np.mean(result.returns)),
        "return_std": float(np.std(result.returns)),
        "episodes": len(result.returns),
        "length_mean": float(np.mean(result.lengths)),
        "returns": [float(r) for r in result.returns],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{config.env.id}: return {report['return_mean']:.2f} +/- {report['return_std']:.2f} "
            f"over {report['episodes']} episodes (mean length {report['length_mean']:.1f})"
        )
    return 0


def command_tune(args: argparse.Namespace) -> int:
    from distdqn.tools.search_space import parse_param, parse_start
    from distdqn.tools.tuning import TuneOptions, tune

    overrides = list(args.overrides)
    for flag, key in ((args.seed, "seed"), (args.total_steps, "total_steps")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    # trials run on this machine's embedded cluster, unless given a cluster's address
    base = _resolve(args, overrides, runs_here=args.address is None and not os.environ.get("RAY_ADDRESS"))
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


def command_play(args: argparse.Namespace) -> int:
    from distdqn.tools.play import PlayOptions, play

    options = PlayOptions(args.episodes, args.seed, args.max_steps, args.gif, args.map, args.fps, args.video)
    source = _chosen_checkpoint(args)
    config, weights = _load_online_weights(args, source)
    play(config, weights, options, source=str(source))
    return 0


def command_plan(args: argparse.Namespace) -> int:
    from distdqn.runtime.plan import Node, assign, machine_cores, oversubscription, render, role_demands

    config = _resolve(args, args.overrides + placement_overrides(args))
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


def command_k8s(args: argparse.Namespace) -> int:
    from distdqn.tools.k8s import K8sOptions, resolve_k8s_config
    from distdqn.tools.k8s_yaml import render

    if args.runtime not in (None, "ray"):
        raise UserError(
            f"--runtime {args.runtime}: a RayCluster runs every role as a Ray actor on its pods; "
            "k8s takes --runtime ray or none"
        )
    # the roles run on the cluster's pods, whose devices manifests() checks against their GPUs
    config = _resolve(args, args.overrides + run_overrides(args), resolve=resolve_k8s_config, runs_here=False)
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
        network_policy=args.network_policy,
    )
    print(render(config, options), end="")
    return 0


def command_plot(args: argparse.Namespace) -> int:
    from distdqn.tools.plots import plot

    plot(args.runs, args.out, args.x, args.group, args.group_by, args.band, args.title)
    print(f"wrote {args.out}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from distdqn.tools.compare import compare

    print(compare(args.runs, args.threshold, args.json))
    return 0


def command_upload(args: argparse.Namespace) -> int:
    from distdqn.storage.object_store import upload_run

    pointers = upload_run(args.run_dir, args.uri)
    uri = args.uri.rstrip("/")
    named = ", ".join(f"{name} -> {version}" for name, version in pointers.items()) or "no checkpoints"
    print(f"uploaded {args.run_dir} to {uri} ({named}); `distdqn train --resume {uri}` goes on from there")
    return 0
