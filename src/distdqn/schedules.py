"""Schedules as pure functions of the step, so a resumed run continues them exactly."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Move linearly from `start` to `end` over `duration` steps, then hold `end`."""
    if step >= duration:
        return end
    return start + (end - start) * max(step, 0) / duration


def learning_rate(lr: float, lr_end: float | None, decay_steps: int, env_steps: int) -> float:
    """The learner's learning rate after `env_steps` env steps: `lr` while `lr_end` is None,
    else linear from `lr` to `lr_end` over `decay_steps` env steps, then `lr_end`.

    A function of the env-step count that the loop already checkpoints, so a resumed run (or a
    restarted learner) continues the schedule exactly, with no state of its own to save."""
    if lr_end is None:
        return lr
    return linear_schedule(lr, lr_end, decay_steps, env_steps)


def apex_epsilon(actor_index: int, num_actors: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X's constant per-actor epsilon: `base ** (1 + alpha * i / (N - 1))`.

    Actor 0 explores most (epsilon = base), actor N-1 least (base ** (1 + alpha)).
    With one actor this is `base`.
    """
    if not 0 <= actor_index < num_actors:
        raise ValueError(f"actor_index {actor_index} outside 0..{num_actors - 1}")
    if num_actors == 1:
        return base
    return base ** (1.0 + alpha * actor_index / (num_actors - 1))
