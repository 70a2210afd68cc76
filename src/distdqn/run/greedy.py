"""A trained policy outside training: its config and online weights read from a checkpoint, and
its greedy score over any number of episodes. `distdqn evaluate`, `distdqn play` and the Python
API (`DQN.load`, `DQN.evaluate`) all go through here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distdqn.config import Config
from distdqn.errors import CheckpointError, UserError
from distdqn.seeding import stream_seed
from distdqn.storage.checkpoint import load_checkpoint, online_weights
from distdqn.storage.object_store import local_checkpoint
from distdqn.types import EvalResult, Weights

MAX_EPISODES = 100_000
BATCH = 64
"""Episodes played side by side, one env each: memory stays flat however many are asked for."""


def read_policy(source: Path | str) -> tuple[Config, Weights]:
    """The config and online network of the checkpoint at `source` (a path or URI). The caller
    decides whether the config's env id may import a module (see `refuse_unrequested_imports`)."""
    with local_checkpoint(source) as directory:
        checkpoint = load_checkpoint(directory)
    return checkpoint.config, online_weights(checkpoint)


def score(config: Config, weights: Weights, episodes: int, seed: int, source: Path | str) -> EvalResult:
    """`episodes` greedy episodes (epsilon `evaluation.epsilon`) in batches of `BATCH`. The first
    batch takes `seed` itself, so a recorded evaluation (best's `eval_seed`) replays exactly."""
    if not 1 <= episodes <= MAX_EPISODES:
        raise UserError(f"episodes must be between 1 and {MAX_EPISODES}, got {episodes}")
    if not 0 <= seed < 2**63:
        raise UserError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    returns, lengths = [], []
    for batch, start in enumerate(range(0, episodes, BATCH)):
        batch_seed = seed if batch == 0 else stream_seed(seed, "evaluator", 2, batch)
        result = _score_batch(config, weights, min(BATCH, episodes - start), batch_seed, source)
        returns.append(result.returns)
        lengths.append(result.lengths)
    return EvalResult(np.concatenate(returns), np.concatenate(lengths))


def _score_batch(config: Config, weights: Weights, episodes: int, seed: int, source: Path | str) -> EvalResult:
    from distdqn.roles import Evaluator

    evaluator = Evaluator(
        config.env, config.network, episodes, config.evaluation.epsilon, config.evaluation.max_episode_steps
    )
    try:
        return evaluator.evaluate(weights, seed)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {source}: {error}") from None
    finally:
        evaluator.env.close()
