"""`distdqn tune`: hyperparameter search over ordinary distdqn runs, scheduled by Ray Tune.

Ray Tune schedules the trials (PBT, PB2, ASHA, or random search without a scheduler); each
trial is a plain run directory, `DIR/trials/<trial-id>/`, so `evaluate`, `plot` and `--resume`
work on it. A trial reports every `interval` env steps: the loop evaluates the greedy policy
there and writes `latest` in full (`train.Reporting`), and with PBT/PB2 that checkpoint goes to
Tune. An exploited trial adopts its donor's checkpoint (weights, optimizer, and the replay and
every role's state where `checkpoint.replay` stores them), then resumes with its own perturbed
hyperparameters, which the learner applies on load (`Learner._apply_hyperparameters`).

`DIR/tune.jsonl` is one line per report (trial, env steps, eval return, the hyperparameters in
effect, and `restored_from` after an exploit); `DIR/best.toml` is the best trial's config, ready
for `distdqn train --config`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distdqn.config import Config, config_to_toml, override_config, short_repr, short_text
from distdqn.config_changes import follow_lr, replay_discarded_by
from distdqn.envs import env_spaces, policy_space
from distdqn.errors import ConfigError, UserError
from distdqn.networks import build_q_network
from distdqn.seeding import stream_seed
from distdqn.storage.checkpoint import adopt_checkpoint
from distdqn.tools.search_space import ParamSpec, field_exists, plain
from distdqn.tools.stalled_search import StallWatch, shortfall

Scheduler = Literal["pbt", "pb2", "asha", "random"]
METRIC = "eval_return"
STEPS = "env_steps"
TIME_ATTR = "intervals"
"""The schedulers' clock: intervals completed. Reports land a few env steps past each multiple of
the interval (actors step in batches), so env steps would miss PBT's `perturbation_interval`."""
NOT_HYPERPARAMETERS = ("placement.", "logging.", "checkpoint.", "evaluation.", "total_steps")
"""Fields a trial may not vary: the trials share the placement, and they are compared by one
evaluation protocol over one budget."""


@dataclass(frozen=True)
class TuneOptions:
    specs: tuple[ParamSpec, ...]
    scheduler: Scheduler
    trials: int
    """Samples of the search space (each grid() value gets this many)."""
    interval: int
    """Env steps between reports (evaluation, checkpoint, PBT exploit/explore)."""
    run_dir: Path
    starts: tuple[dict[str, Any], ...] = ()
    """Hyperparameters of the first trials, before the drawn ones (Tune's points_to_evaluate)."""
    resample_probability: float = 0.25
    """PBT: chance that an explored value is drawn afresh instead of multiplied by 0.8 or 1.2."""
    quantile_fraction: float = 0.25
    """PBT/PB2: the bottom fraction of trials that copies the top fraction."""
    synchronous: bool = False
    """PBT/PB2: decide only when every trial has reached the same interval. Tune pauses the
    trials that arrive first and restarts them from their checkpoints, which costs a restart per
    trial and interval; the default decides as each trial reports (Tune's default too)."""
    max_concurrent: int | None = None
    cpus: int | None = None
    """CPUs of the embedded Ray cluster (default: this machine's)."""
    address: str | None = None
    quiet: bool = False


@dataclass
class TuneSummary:
    best_trial: str
    best_return: float
    best_params: dict[str, Any]
    trials: int
    errors: list[str] = field(default_factory=list)
    exploits: int = 0


# -- checking the search space, before anything starts ---------------------------------------
def check_specs(base: Config, options: TuneOptions) -> None:
    """Refuse in one line what would fail later inside a trial: unknown fields, fields that are
    not hyperparameters, values the config rejects, env values the env rejects, spaces the
    scheduler cannot search, and (PBT/PB2) fields whose change would alter the network's shapes,
    which no exploit survives."""
    env_spaces(base.env)  # an env that cannot be made fails every trial, after Ray has started
    seen: set[str] = set()
    for spec in options.specs:
        if spec.key in seen:
            raise UserError(f"--param {spec.key} is given twice")
        seen.add(spec.key)
        if not field_exists(spec.key):
            raise UserError(f"--param {spec.key}: unknown config field")
        if spec.key.startswith(NOT_HYPERPARAMETERS):
            raise UserError(
                f"--param {spec.key}: not a hyperparameter (every trial shares the placement, logging, "
                "checkpoints, evaluation and total_steps); set it with --set"
            )
        if options.scheduler == "pb2" and not spec.is_range:
            raise UserError(f"--param {spec.key}: pb2 searches ranges only (uniform, loguniform, randint)")
        shapes = network_shapes(base) if options.scheduler in ("pbt", "pb2") else None
        for value in spec.candidates():
            origin = f"--param {spec.key}={short_repr(plain(value))}"
            config = _with(base, {spec.key: value}, origin=origin)
            if config.env != base.env:
                _check_env(config, origin)
            if shapes is None:
                continue
            if network_shapes(config) != shapes:
                why = "changes the network's shapes, and an exploited trial must load its donor's weights"
            elif replay_discarded_by(base, config):
                why = "changes what the stored replay means, and an exploited trial must keep its donor's replay"
            else:
                continue
            raise UserError(
                f"--param {spec.key}: {options.scheduler} cannot mutate it: {spec.key}={short_repr(plain(value))} "
                f"{why}; search it with --scheduler random or asha"
            )
    specs = {spec.key: spec for spec in options.specs}
    for start in options.starts:
        unknown = sorted(set(start) - seen)
        if unknown:
            raise UserError(f"--start {unknown[0]}: not one of the --param fields")
        for key, value in start.items():
            if not specs[key].contains(value):
                raise UserError(
                    f"--start {key}={short_repr(plain(value))} lies outside --param {key}'s {specs[key].kind}"
                )
        _with(base, start, origin="--start")
    if not options.specs:
        raise UserError("give at least one --param KEY=KIND(ARGS) to search")


def _check_env(config: Config, origin: str) -> None:
    """Build the env of a candidate's config: a value the env rejects (a kwarg it does not take, a
    size it refuses) otherwise fails each trial that draws it, after Ray has started; four trials
    ran before the first said so."""
    try:
        env_spaces(config.env)
    except UserError as error:
        raise UserError(f"{origin}: {short_text(str(error), 300)}") from None


def network_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    frame_space, action_space = env_spaces(config.env)
    network = build_q_network(config.network, policy_space(config.env, frame_space), action_space)
    return {name: tuple(value.shape) for name, value in network.state_dict().items()}


def _with(base: Config, params: dict[str, Any], origin: str) -> Config:
    overrides = [f"{key}={json.dumps(plain(value))}" for key, value in params.items()]
    try:
        return override_config(base, overrides, origin=origin)
    except ConfigError as error:
        raise UserError(str(error)) from None


def trial_params(specs: tuple[ParamSpec, ...], drawn: dict[str, Any]) -> dict[str, Any]:
    """The values a trial runs with, from what Tune drew or PBT perturbed."""
    return {spec.key: plain(spec.fit(drawn[spec.key])) for spec in specs}


def trial_config(base: Config, params: dict[str, Any], trial_index: int) -> Config:
    """The base config with a trial's values; each trial its own seed (unless `seed` is searched)."""
    seeded = dict(params)
    seeded.setdefault("seed", stream_seed(base.seed, "trial", trial_index) % 2**31)
    return follow_lr(base, _with(base, {**seeded, "logging.progress": False}, origin="trial"))


# -- inside a trial (a Tune worker process) -------------------------------------------------
@dataclass(frozen=True)
class TrialSetup:
    base: Config
    specs: tuple[ParamSpec, ...]
    root: Path
    interval: int
    with_checkpoints: bool


def run_trial(drawn: dict[str, Any], setup: TrialSetup) -> None:
    """One trial: a fresh run, a trial restarted by Tune (its run dir goes on), or an exploited
    one (the donor's checkpoint becomes this run's `latest`, then the run resumes from it with
    this trial's hyperparameters)."""
    from ray import tune

    from distdqn.run.counters import Counters, Reporting
    from distdqn.run.train import resume, train

    trial_id = tune.get_context().get_trial_id()
    params = trial_params(setup.specs, drawn)
    config = trial_config(setup.base, params, trial_index=int(trial_id.rsplit("_", 1)[-1]))
    run_dir = setup.root / "trials" / trial_id
    restored_from: list[str | None] = [None]

    def send(counters: Counters, latest: Path) -> None:
        metrics = {
            METRIC: counters.last_eval_return,
            STEPS: counters.env_steps,
            TIME_ATTR: counters.env_steps // setup.interval,
            "updates": counters.updates,
            "run_wall_s": counters.wall_s,
            "best_eval_return": counters.best_eval_return,
            "params": params,
            "restored_from": restored_from[0],
        }
        restored_from[0] = None
        if not setup.with_checkpoints:
            tune.report(metrics)
            return
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(latest.resolve())))

    reporting = Reporting(setup.interval, send)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as donor_dir:
            adopt_checkpoint(Path(donor_dir), run_dir / "checkpoints", keep=config.checkpoint.keep)
        donor = Path(checkpoint.path).parent.name  # Tune's trial directories are named by trial id
        restored_from[0] = donor if donor != trial_id else None
        resume(run_dir, config, reporting=reporting, adopted=True)
    elif run_dir.exists() and any(run_dir.iterdir()):
        resume(run_dir, config, reporting=reporting)
    else:
        train(config, run_dir, reporting=reporting)


# -- the driver -----------------------------------------------------------------------------
def _tune_log(path: Path, quiet: bool) -> Any:
    from ray.tune import Callback

    class TuneLog(Callback):
        """Writes DIR/tune.jsonl (every report: the trial's hyperparameters over time) and one
        plain progress line per report on stderr."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.exploits = 0

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            record = {
                "trial": trial.trial_id,
                STEPS: result.get(STEPS),
                "wall_s": round(time.monotonic() - self.started, 3),
                METRIC: result.get(METRIC),
                "params": result.get("params"),
                "restored_from": result.get("restored_from"),
            }
            self.exploits += record["restored_from"] is not None
            with path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            if quiet:
                return
            score = "-" if record[METRIC] is None else f"{record[METRIC]:.1f}"
            values = " ".join(f"{key}={value}" for key, value in (record["params"] or {}).items())
            exploited = f" (copied {record['restored_from']})" if record["restored_from"] else ""
            print(
                f"trial {trial.trial_id} at {record[STEPS]} env steps: eval return {score}{exploited} {values}",
                file=sys.stderr,
            )

    return TuneLog()


def _stall_warning(bundles: list[dict[str, float]]) -> Any:
    """A Tune callback that prints `StallWatch`'s warning on stderr (with --quiet too)."""
    import ray
    from ray.tune import Callback

    watch = StallWatch(bundles, ray.available_resources)

    class StallWarning(Callback):
        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            message = watch.check([trial.status for trial in trials], time.monotonic())
            if message is not None:
                print(message, file=sys.stderr, flush=True)

    return StallWarning()


def _scheduler(options: TuneOptions, total_steps: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2

    class StrictlyBetterDonors:
        """A trial copies another only when that one scored strictly better. With a sparse
        reward (a maze) every trial scores the same until one finds the goal, and Tune's ranking
        breaks such ties at random: equal trials copied each other, over the one about to find it
        (measured: benchmarks/RESULTS.md, "PBT against random search")."""

        _trial_state: dict

        def _quantiles(self) -> tuple[list, list]:
            lower, upper = super()._quantiles()  # type: ignore[misc]
            if not upper:
                return lower, upper
            floor = min(self._trial_state[trial].last_score for trial in upper)
            return [trial for trial in lower if self._trial_state[trial].last_score < floor], upper

    class StrictPBT(StrictlyBetterDonors, PopulationBasedTraining):
        pass

    class StrictPB2(StrictlyBetterDonors, PB2):
        pass

    common: dict[str, Any] = {"time_attr": TIME_ATTR, "metric": METRIC, "mode": "max"}
    if options.scheduler == "pbt":
        return StrictPBT(
            perturbation_interval=1,
            hyperparam_mutations={spec.key: spec.mutation() for spec in options.specs},
            quantile_fraction=options.quantile_fraction,
            resample_probability=options.resample_probability,
            synch=options.synchronous,
            log_config=False,
            **common,
        )
    if options.scheduler == "pb2":
        return StrictPB2(
            perturbation_interval=1,
            hyperparam_bounds={spec.key: list(spec.values) for spec in options.specs},
            quantile_fraction=options.quantile_fraction,
            synch=options.synchronous,
            log_config=False,
            **common,
        )
    if options.scheduler == "asha":
        return ASHAScheduler(max_t=total_steps // options.interval, grace_period=1, reduction_factor=3, **common)
    return None


def trial_bundles(config: Config) -> list[dict[str, float]]:
    """What one trial reserves: on the inline or threads runtime its one process; on the ray
    runtime also every role, as Ray actors of their own in the trial's placement group."""
    from distdqn.runtime.plan import role_demands

    placement = config.placement
    if placement.runtime != "ray":
        return [{"CPU": float(placement.torch_threads)}]
    return [{"CPU": 1.0}, *(role.demand for role in role_demands(placement) if role.demand)]


def _check_a_trial_fits(bundles: list[dict[str, float]], nodes: list[Any]) -> None:
    """Tune would wait forever for a trial the cluster cannot hold; say so in one line instead."""
    totals: dict[str, float] = {}
    for node in nodes:
        for name, amount in node.resources.items():
            totals[name] = totals.get(name, 0.0) + amount
    short = shortfall(bundles, totals)
    if short is not None:
        name, needed, total = short
        raise UserError(
            f"one trial needs {needed:g} {name} (its driver and, on the ray runtime, every role); "
            f"the Ray cluster has {total:g}"
        )


def prepare_tune_dir(run_dir: Path) -> None:
    try:
        (run_dir / "trials").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {run_dir}: {error.strerror or error}") from None


def tune(base: Config, options: TuneOptions) -> TuneSummary:
    """Run the search; write DIR/tune.jsonl and DIR/best.toml; return what it found."""
    check_specs(base, options)
    if options.scheduler in ("pbt", "pb2", "asha") and options.interval >= base.total_steps:
        raise UserError(
            f"--interval {options.interval} must be below --total-steps {base.total_steps}: "
            f"{options.scheduler} decides at each interval"
        )
    run_dir = options.run_dir.resolve()
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"--run-dir {run_dir} is not an empty directory; tune writes a new one")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV or TensorBoard copies of tune.jsonl
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    from distdqn.runtime.ray import RayConnection, RayRuntime  # first: it sets the environment Ray reads

    from ray import tune as ray_tune  # isort: skip
    from ray.tune.logger import JsonLoggerCallback  # isort: skip
    from ray.tune.search.basic_variant import BasicVariantGenerator  # isort: skip

    setup = TrialSetup(base, options.specs, run_dir, options.interval, options.scheduler in ("pbt", "pb2"))
    log = _tune_log(run_dir / "tune.jsonl", options.quiet)
    connection = RayConnection(options.address, options.cpus or os.cpu_count() or 1)
    try:
        bundles = trial_bundles(base)
        _check_a_trial_fits(bundles, RayRuntime.cluster_nodes())
        prepare_tune_dir(run_dir)
        (run_dir / "base.toml").write_text(config_to_toml(base))
        tuner = ray_tune.Tuner(
            ray_tune.with_resources(
                ray_tune.with_parameters(run_trial, setup=setup), ray_tune.PlacementGroupFactory(bundles)
            ),
            param_space={spec.key: spec.search_domain() for spec in options.specs},
            tune_config=ray_tune.TuneConfig(
                num_samples=options.trials,
                scheduler=_scheduler(options, base.total_steps),
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=[dict(start) for start in options.starts] or None,
                    random_state=base.seed,
                ),
                metric=None if options.scheduler != "random" else METRIC,
                mode=None if options.scheduler != "random" else "max",
                max_concurrent_trials=options.max_concurrent,
                trial_dirname_creator=lambda trial: trial.trial_id,
                trial_name_creator=lambda trial: trial.trial_id,
                reuse_actors=True,  # an exploit or pause restarts the trial in its process, not a new one
            ),
            run_config=ray_tune.RunConfig(
                name="ray-tune",
                storage_path=str(run_dir),
                # the last report ends the trial before the scheduler sees it: an exploit there is waste
                stop={STEPS: base.total_steps},
                verbose=0,
                callbacks=[log, JsonLoggerCallback(), _stall_warning(bundles)],  # result.json: Tune's results read it
                failure_config=ray_tune.FailureConfig(max_failures=0),
            ),
        )
        results = tuner.fit()
    finally:
        connection.close()
    return _summarize(base, options, results, run_dir, log.exploits)


def _summarize(base: Config, options: TuneOptions, results: Any, run_dir: Path, exploits: int) -> TuneSummary:
    """The best trial by its last evaluation (for PBT: the lineage that ended best, with the
    hyperparameters it ended with), written as DIR/best.toml."""
    errors = [
        f"{Path(result.path).name}: {short_text(_first_line(result.error), 300)}" for result in results if result.error
    ]
    scored = [
        result
        for result in results
        if result.error is None and isinstance(result.metrics.get(METRIC), (int, float))
        if math.isfinite(result.metrics[METRIC])
    ]
    if not scored:
        raise UserError(f"no trial finished with an evaluation; first error: {errors[0] if errors else 'none'}")
    best = max(scored, key=lambda result: result.metrics[METRIC])
    trial_id = best.metrics["trial_id"]
    params = best.metrics["params"]
    best_config = trial_config(base, params, trial_index=int(trial_id.rsplit("_", 1)[-1]))
    best_config = _with(best_config, {"logging.progress": base.logging.progress}, origin="best")
    (run_dir / "best.toml").write_text(config_to_toml(best_config))
    shutil.rmtree(run_dir / "ray-tune" / "driver_artifacts", ignore_errors=True)
    return TuneSummary(trial_id, float(best.metrics[METRIC]), params, len(results), errors, exploits)


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip().splitlines() if error is not None else []
    return text[-1] if text else type(error).__name__
