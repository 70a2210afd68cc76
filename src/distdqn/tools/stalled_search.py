"""A search whose trials cannot start says so instead of waiting in silence.

Ray Tune waits for a trial's placement group for as long as it takes, and warns only when the
cluster's *total* resources could never hold it. When they could but are not free (held by
another job, or, as seen with Ray 2.60, a CPU leaked for good when a placement group was removed
while its trial actor was being killed), a search waits forever without a word.
"""

from __future__ import annotations

from collections.abc import Callable

STALL_WARNING_S = 120.0
"""How long trials may stay pending with none running before the search says why."""


def shortfall(bundles: list[dict[str, float]], resources: dict[str, float]) -> tuple[str, float, float] | None:
    """The first resource one trial (its placement group's `bundles`) needs more of than
    `resources` holds, as (name, needed, held); None when it fits."""
    for name in sorted({key for bundle in bundles for key in bundle}):
        needed = sum(bundle.get(name, 0.0) for bundle in bundles)
        held = resources.get(name, 0.0)
        if needed > held + 1e-9:
            return name, needed, held
    return None


class StallWatch:
    """Fed the trials' statuses at every step of the search; returns a warning, once, when trials
    have been pending with none running for `after_s` seconds and one trial does not fit in what
    `free_resources()` reports (asked only then)."""

    def __init__(
        self,
        bundles: list[dict[str, float]],
        free_resources: Callable[[], dict[str, float]],
        after_s: float = STALL_WARNING_S,
    ) -> None:
        self.bundles, self.free_resources, self.after_s = bundles, free_resources, after_s
        self._pending_since: float | None = None
        self._warned = False

    def check(self, statuses: list[str], now: float) -> str | None:
        if "RUNNING" in statuses or "PENDING" not in statuses:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = now
        waited = now - self._pending_since
        if self._warned or waited < self.after_s:
            return None
        short = shortfall(self.bundles, self.free_resources())
        if short is None:
            return None
        self._warned = True
        name, needed, free = short
        return (
            f"distdqn: warning: no trial has started for {waited:.0f} s: one trial needs {needed:g} {name} "
            f"and the Ray cluster has {free:g} free (held outside this search, or leaked by Ray: restart the cluster)"
        )
