"""The snapshot: a consistent cut across every role for exact resume, and its restore.

`take` records every role's state at one point of the loop, with what is in flight between
roles (actors' finished batches not yet inserted, the evaluation under way); `restore` puts every
role and the loop back there, then applies what the config changed since (see
distdqn.config_changes). It is `latest`'s `resume.json` (and `resume/`) when `checkpoint.replay`
stores the replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distdqn.config import Config
from distdqn.config_changes import actors_restart_episodes
from distdqn.envs import env_spaces, frame_box
from distdqn.errors import CheckpointError
from distdqn.replay.buffer import replay_bytes
from distdqn.replay.nstep import rediscounted
from distdqn.run.counters import next_multiple
from distdqn.run.evaluation import Mark
from distdqn.run.rate_limiter import rate_changed
from distdqn.types import ReplayTerms, TransitionBatch, Weights

if TYPE_CHECKING:
    from distdqn.run.loop import TrainingRun

SNAPSHOT_AUTO_BYTES = 1 << 30
"""`checkpoint.replay = "auto"` stores replays up to this size: a few seconds to write."""


def snapshots_replay(config: Config) -> bool:
    """Whether `latest` holds the replay and every role's state (`checkpoint.replay`)."""
    if config.checkpoint.replay != "auto":
        return config.checkpoint.replay
    frames = frame_box(env_spaces(config.env)[0])
    return replay_bytes(config.replay.capacity, frames.shape, frames.dtype) <= SNAPSHOT_AUTO_BYTES


def snapshot_layout(config: Config) -> dict[str, Any]:
    """What the shapes of the roles' states depend on: a snapshot restores only into the same."""
    return {
        "env": config.env.id,
        "num_envs": config.env.num_envs,
        "frame_stack": config.env.frame_stack,
        "num_actors": config.placement.num_actors,
        "num_shards": config.placement.num_shards,
        "capacity": config.replay.capacity,
        "n_step": config.algorithm.n_step,
    }


def take(run: TrainingRun) -> dict[str, Any]:
    """Every role's state at this point of the loop, and what is in flight between roles.
    Updates in flight are finished first, as the loop's next turn would finish them, so the
    learner's state and the priorities it sent back are in the cut. Each role takes its
    snapshot call after every call made to it before, so shards hold every batch inserted so far."""
    runtime = run.runtime
    run.learning.finish_all()
    run.contents.read()
    shards = [runtime.call(shard, "snapshot") for shard in run.shards]
    actors = [None if actor is None else runtime.call(actor, "snapshot") for actor in run.supervisor.live(run.actors)]
    pending = [
        {"actor": index, "steps": runtime.get(steps), "batches": [runtime.get(batch)._asdict() for batch in batches]}
        for steps, (index, batches) in run.collects.items()
    ]
    evaluations = run.evaluations
    evaluation = None
    if evaluations.future is not None and evaluations.evaluated is not None:
        weights_future, seed = evaluations.evaluated
        weights = runtime.get(weights_future)
        evaluation = {
            "seed": seed,
            "mark": list(evaluations.mark),
            "weights_version": weights.version,
            "weights": weights.tensors,
        }
    return {
        "layout": snapshot_layout(run.config),
        "loop": _loop_state(run),
        "shards": [runtime.get(future) for future in shards],
        "actors": [None if future is None else runtime.get(future) for future in actors],  # None: lost
        "pending": pending,
        "evaluation": evaluation,
    }


def _loop_state(run: TrainingRun) -> dict[str, Any]:
    telemetry = run.telemetry
    return {
        "plan_rng": run.learning.plan_rng.bit_generator.state,
        "learning_origin": run.learning.rate_limiter.origin,
        "due": dict(run.due),
        "log_mark": list(telemetry.log_mark),
        "evaluation_mark": list(run.evaluations.mark),
        "last_metrics": dict(telemetry.last_metrics),
        "collects_launched": list(run.collects_launched),
        "shard_sizes": list(run.contents.sizes),
        "shard_masses": list(run.contents.masses),
        "role_marks": dict(telemetry.role_marks),
        "episode_returns": list(telemetry.episode_returns),
        "episode_lengths": list(telemetry.episode_lengths),
        "metrics_offset": run.metrics.position,
    }


def restore(run: TrainingRun, state: dict[str, Any]) -> None:
    """Put every role, and the loop, back where `take` found them; a state that does not fit (a
    hand-edited or foreign `resume.json`) is refused in one line."""
    try:
        _restore_roles_and_loop(run, state)
    except (CheckpointError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
        cause = getattr(error, "cause", None) or error  # Ray wraps a role's error with its traceback
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise CheckpointError(
            f"checkpoint {run.run_dir / 'checkpoints' / 'latest'}: resume.json does not fit this run ({detail})"
        ) from None


def _restore_roles_and_loop(run: TrainingRun, state: dict[str, Any]) -> None:
    """Restore as saved, then apply what the config changed since (see `config_changes`)."""
    runtime, config, counters = run.runtime, run.config, run.counters
    before = config if run.continued is None else run.continued.config
    own_streams = run.continued is not None and run.continued.adopted
    built_under = ReplayTerms(before.algorithm.gamma, before.replay.alpha, before.replay.priority_eps)
    new_episodes = own_streams or actors_restart_episodes(before, config)  # a donor's envs hold its streams
    calls = [
        runtime.call(shard, "restore", part, built_under, own_streams)
        for shard, part in zip(run.shards, state["shards"], strict=True)
    ] + [
        runtime.call(actor, "restore", part, new_episodes, own_streams)
        for actor, part in zip(run.actors, state["actors"], strict=True)
        if part is not None  # an actor lost before the snapshot starts afresh
    ]
    for call in calls:
        runtime.get(call)
    loop = state["loop"]
    if not own_streams:
        run.learning.plan_rng.bit_generator.state = loop["plan_rng"]
    origin = loop["learning_origin"]
    run.learning.rate_limiter.origin = None if origin is None else (int(origin[0]), int(origin[1]))
    if rate_changed(before, config):  # the new ratio holds from here on
        run.learning.rate_limiter.rebase(counters)
    run.due = {key: int(loop["due"][key]) for key in run.due}
    for key, every in (
        ("log", lambda c: c.logging.every_steps),
        ("eval", lambda c: c.evaluation.every_steps),
        ("checkpoint", lambda c: c.checkpoint.every_steps),
    ):
        if every(before) != every(config):
            run.due[key] = next_multiple(counters.env_steps, every(config))
    telemetry = run.telemetry
    telemetry.log_mark = _mark(loop["log_mark"])
    run.evaluations.mark = _mark(loop["evaluation_mark"])
    telemetry.last_metrics = {str(key): float(value) for key, value in loop["last_metrics"].items()}
    run.collects_launched = [int(count) for count in loop["collects_launched"]]
    run.contents.sizes = [int(size) for size in loop["shard_sizes"]]
    run.contents.masses = [float(mass) for mass in loop["shard_masses"]]
    telemetry.role_marks = {str(key): float(value) for key, value in loop["role_marks"].items()}
    telemetry.episode_returns = [float(x) for x in loop["episode_returns"]]
    telemetry.episode_lengths = [int(x) for x in loop["episode_lengths"]]
    gamma = config.algorithm.gamma if before.algorithm.gamma != config.algorithm.gamma else None
    for item in state["pending"]:
        batches = [runtime.put(_continued_batch(TransitionBatch(**batch), gamma)) for batch in item["batches"]]
        run.collects[runtime.put(int(item["steps"]))] = (int(item["actor"]), batches)
    evaluation = state["evaluation"]
    if evaluation is not None:
        weights = runtime.put(Weights(int(evaluation["weights_version"]), evaluation["weights"]))
        run.evaluations.start(weights, int(evaluation["seed"]))
        run.evaluations.mark = _mark(evaluation["mark"])


def _continued_batch(batch: TransitionBatch, gamma: float | None) -> TransitionBatch:
    """An actor's batch saved in flight, under a new `gamma` where one is given (its one-step
    returns keep; their bootstrap discounts are recomputed as the shards recompute theirs)."""
    if gamma is None:
        return batch
    return batch._replace(discounts=rediscounted(batch.discounts, batch.offsets, gamma))


def _mark(saved: list) -> Mark:
    """An (env_steps, updates, wall_s) mark as a snapshot's JSON holds it."""
    env_steps, updates, wall_s = saved
    return int(env_steps), int(updates), float(wall_s)
