"""Every random stream of a run, derived from its one seed through a NumPy SeedSequence tree.

A stream is named by a path: the role kind, the instance index, then what it seeds (its own
generator, or environment k). SeedSequence hashes the whole path, so no two streams of a run
share a seed, and neither do streams of different run seeds: actor 100 of seed 0 is not actor 0
of seed 1, and the evaluator is no actor (adding offsets to one seed gave both collisions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy is imported where a stream is made: the command line reads EVAL_SEED without it
    import numpy as np

ROLE_KEYS = {"learner": 0, "actor": 1, "shard": 2, "evaluator": 3, "loop": 4, "trial": 5}
"""Fixed keys: renumbering them would change every seeded run."""

EVAL_SEED = 12345
"""The default `--seed` of `distdqn evaluate` and `distdqn play`: one value, so that the two play
the same episodes unless told otherwise."""


def seed_sequence(seed: int, role: str, *path: int) -> np.random.SeedSequence:
    """The stream at `role/path` of run seed `seed` (seed >= 0)."""
    import numpy as np

    return np.random.SeedSequence(seed, spawn_key=(ROLE_KEYS[role], *path))


def int_seed(sequence: np.random.SeedSequence) -> int:
    """A 32-bit integer drawn from a SeedSequence, for APIs that take an int (torch, gymnasium).
    32 bits, because some envs seed NumPy's legacy RandomState (MinAtar), which takes no more;
    generators we own take the SeedSequence itself, with all its entropy."""
    import numpy as np

    return int(sequence.generate_state(1, np.uint32)[0])


def stream_seed(seed: int, role: str, *path: int) -> int:
    """`int_seed` of the stream at `role/path`."""
    return int_seed(seed_sequence(seed, role, *path))


def env_seeds(seed: int, role: str, index: int, num_envs: int, *more: int) -> list[int]:
    """One seed per environment of role instance `index`: environment k is stream `role/index/k+1`
    (stream `role/index/0` is the instance's own generator). `more` names later resets of the
    same envs (a resumed actor whose envs could not be restored starts new episodes)."""
    return [stream_seed(seed, role, index, k + 1, *more) for k in range(num_envs)]


def role_rng(seed: int, role: str, index: int, *branch: int) -> np.random.Generator:
    """The generator of role instance `index` (exploration, sampling); `branch` names where a
    continued run's streams branched off (see `Actor`), none for a run's first start."""
    import numpy as np

    return np.random.default_rng(seed_sequence(seed, role, index, 0, *branch))
