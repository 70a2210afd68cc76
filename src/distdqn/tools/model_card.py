"""The model card (README.md) of an exported policy, in the Hugging Face Hub's format: YAML
metadata the Hub reads (library, tags, and a `model-index` whose evaluation result the Hub shows
and ranks on the env's leaderboard, in the form rl-zoo's cards use: task
`reinforcement-learning`, dataset the env id, metric `mean_reward` as "mean +/- std"), then the
results and the commands that reproduce them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import yaml

from distdqn.config import Config, config_to_toml
from distdqn.config.trust import imported_module
from distdqn.types import EvalResult


@dataclass(frozen=True)
class CardFacts:
    """What the card states besides the config: where the policy came from and how it was scored."""

    scores: EvalResult
    seed: int
    """The evaluation's seed (`distdqn evaluate --seed`)."""
    checkpoint: str
    """`best` or `latest`, or a checkpoint's path."""
    trained_steps: int | None
    """Env steps the policy was trained for, where the checkpoint says."""
    video: str | None
    """The video's file name, or None where there is none."""


def mean_reward(scores: EvalResult) -> str:
    """The Hub's form of an RL result: "mean +/- std"."""
    return f"{scores.mean_return:.2f} +/- {scores.std_return:.2f}"


def card_metadata(config: Config, scores: EvalResult) -> dict:
    env_id = config.env.id
    return {
        "library_name": "distdqn",
        "tags": [env_id, "reinforcement-learning", "deep-reinforcement-learning", "deep-q-learning", "distdqn"],
        "model-index": [
            {
                "name": "DQN",
                "results": [
                    {
                        "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [
                            {
                                "type": "mean_reward",
                                "value": mean_reward(scores),
                                "name": "mean_reward",
                                "verified": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }


def _allow_import(config: Config) -> str:
    """`--allow-import MODULE` where the env id `MODULE:Name` imports a module, which a command
    reading the id from a file needs."""
    module = imported_module(config.env.id)
    return f" --allow-import {shlex.quote(module)}" if module is not None else ""


def model_card(config: Config, facts: CardFacts) -> str:
    scores = facts.scores
    env_id = config.env.id
    epsilon = config.evaluation.epsilon
    policy = "greedy policy" if epsilon == 0 else f"epsilon-greedy policy (epsilon {epsilon:g})"
    trained = f" after {facts.trained_steps:,} env steps" if facts.trained_steps is not None else ""
    allow = _allow_import(config)
    front = yaml.safe_dump(card_metadata(config, facts.scores), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# DQN agent playing {env_id}",
        "",
        f"A Deep Q-Network trained on `{env_id}` with distdqn: the {facts.checkpoint} checkpoint of its run{trained}.",
        "",
        "## Evaluation",
        "",
        "| episodes | mean return | std | mean length | seed |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(scores.returns)} | {scores.mean_return:.2f} | {scores.std_return:.2f} "
        f"| {scores.lengths.mean():.1f} | {facts.seed} |",
        "",
        f"Undiscounted returns of the {policy}, one env per episode (results.json lists every episode).",
        "",
    ]
    if facts.video is not None:
        lines += [
            f'<video controls loop src="{facts.video}"></video>',
            "",
            f"One episode: [{facts.video}]({facts.video}).",
            "",
        ]
    lines += [
        "## Usage",
        "",
        "```python",
        "from distdqn import DQN",
        "",
        'model = DQN.load("MODEL_DIR")  # this folder, e.g. from `hf download REPO_ID --local-dir MODEL_DIR`',
        "action, _ = model.predict(observation, deterministic=True)",
        "```",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"distdqn evaluate MODEL_DIR --episodes {len(scores.returns)} --seed {facts.seed}{allow}  # the table above",
        f"distdqn train --config MODEL_DIR/config.toml{allow}  # train again (the config's seed is {config.seed})",
        "```",
        "",
        "## Config",
        "",
        "```toml",
        config_to_toml(config).rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)
