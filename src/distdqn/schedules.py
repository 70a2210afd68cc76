"""Schedules as pure functions of the step, so a resumed run continues them exactly."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Move linearly from `start` to `end` over `duration` steps, then hold `end`."""
    if step >= duration:
        return end
    return start + (end - start) * max(step, 0) / duration


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
