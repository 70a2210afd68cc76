"""The rate limiter: how many updates the learners owe, and when actors must wait for them.

After learning starts, `replay_ratio * (env steps since)` update steps are owed (Reverb's
samples-per-insert in spirit). With `rate_limit = "ratio"`, actors are not relaunched while more
than `max_update_lag` updates are still running, so a slow learner slows the actors instead of
drifting the ratio. With `"unlimited"` (Ape-X), actors run free and the learners keep
`max_update_lag` updates queued. A change of the ratio re-bases the origin: the new ratio holds
from the point of change, never over the history before it.
"""

from __future__ import annotations

from collections.abc import Callable

from distdqn.config import Config
from distdqn.run.counters import Counters


class RateLimiter:
    def __init__(self, config: Config) -> None:
        self.algorithm = config.algorithm
        self.placement = config.placement
        self.origin: tuple[int, int] | None = None  # (env_steps, updates) when learning began

    def owed(self, counters: Counters, in_flight: int, replay_size: Callable[[], int]) -> int:
        """Update steps to send now; `replay_size()` is asked only while learning has not begun."""
        if self.origin is None:
            if replay_size() < self.algorithm.learning_starts:
                return 0
            self.origin = (counters.env_steps, counters.updates)
        if self.placement.rate_limit == "unlimited":
            return max(0, self.placement.max_update_lag - in_flight)
        steps, updates = self.origin
        return updates + int(self.algorithm.replay_ratio * (counters.env_steps - steps)) - counters.updates

    def must_wait(self, in_flight: int) -> bool:
        """Whether an actor must wait for updates before it collects again."""
        return self.placement.rate_limit == "ratio" and in_flight > self.placement.max_update_lag

    def rebase(self, counters: Counters) -> None:
        """The ratio changed (a resume, an exploit): owe it from here on, if learning had begun."""
        if self.origin is not None:
            self.origin = (counters.env_steps, counters.updates)


def rate_changed(before: Config, after: Config) -> bool:
    """Whether the rate limiter's terms changed between two configs."""
    return (before.algorithm.replay_ratio, before.placement.rate_limit) != (
        after.algorithm.replay_ratio,
        after.placement.rate_limit,
    )
