"""`distdqn export`: a trained policy as a folder that the Hugging Face Hub takes as a model
repository (`distdqn push` uploads it) and that `DQN.load(folder)` and `distdqn evaluate folder`
read back:

    model.safetensors   the online Q-network's tensors, named as in a checkpoint without `online.`
    config.toml         the run's resolved config: `distdqn train --config config.toml` trains it again
    README.md           the model card (distdqn.tools.model_card): the Hub's metadata, the evaluation,
                        the commands that reproduce it
    results.json        the evaluation's numbers, every episode's return among them
    replay.mp4          one greedy episode (the evaluation's first), when the env renders

The folder is written under a temporary name next to its place and renamed there when complete.
Reading one back trusts nothing in it, as it may come from anyone on the Hub: weights only from
safetensors (never pickle), files of bounded size, tensors of exactly the names, shapes and dtype
of the network its config builds, and an env id that imports a module only when allowed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distdqn.config import Config, config_to_toml, load_config_toml
from distdqn.config.trust import refuse_unrequested_imports
from distdqn.errors import CheckpointError, ConfigError, EnvError, UserError
from distdqn.seeding import EVAL_SEED, env_seeds
from distdqn.tools.atomic import temporary_sibling
from distdqn.tools.model_card import CardFacts, mean_reward, model_card
from distdqn.types import EvalResult, Weights

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.toml"
CARD_FILE = "README.md"
RESULTS_FILE = "results.json"
VIDEO_FILE = "replay.mp4"
MAX_HEADER_BYTES = 1 << 20
"""What model.safetensors may hold besides its tensors' bytes: a header that names a few tensors
takes a few hundred bytes; a larger file is refused before it is read."""
REPLAY_STEPS = 1000
"""The replay video's episode is cut after this many steps (33 s at 30 fps)."""


@dataclass(frozen=True)
class ExportOptions:
    """What `distdqn export` was asked for (`episodes` and `seed` as `distdqn evaluate` takes them)."""

    episodes: int = 10
    seed: int = EVAL_SEED
    video: bool = True
    force: bool = False


@dataclass(frozen=True)
class Exported:
    scores: EvalResult
    video_note: str | None
    """Why there is no replay.mp4, where there is none though one was asked for."""
    bytes: int
    """The folder's size."""


def _refuse_destination(destination: Path, force: bool) -> None:
    if destination.exists() and not destination.is_dir():
        raise UserError(f"{destination} exists and is not a directory")
    if destination.is_dir() and any(destination.iterdir()) and not force:
        raise UserError(f"{destination} is not empty; use --force to replace it")


def export_policy(
    config: Config,
    weights: Weights,
    destination: Path,
    options: ExportOptions,
    *,
    source: str,
    checkpoint: str,
    trained_steps: int | None,
) -> Exported:
    """Evaluate the policy `weights` and write its folder at `destination` (see the module
    docstring), replacing a non-empty one only with `options.force`. `source` names where the
    weights came from in errors; `checkpoint` and `trained_steps` are stated in the card."""
    from safetensors.numpy import save_file

    from distdqn.run.greedy import score

    _refuse_destination(destination, options.force)
    scores = score(config, weights, options.episodes, options.seed, source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    building = temporary_sibling(destination)
    building.mkdir()
    try:
        save_file({name: np.ascontiguousarray(array) for name, array in weights.tensors.items()}, building / MODEL_FILE)
        (building / CONFIG_FILE).write_text(config_to_toml(config))
        video_note = (
            _record_replay(config, weights, building / VIDEO_FILE, options.seed, source) if options.video else None
        )
        video = VIDEO_FILE if (building / VIDEO_FILE).is_file() else None
        results = {
            "env_id": config.env.id,
            "mean_reward": mean_reward(scores),
            "return_mean": scores.mean_return,
            "return_std": scores.std_return,
            "episodes": len(scores.returns),
            "length_mean": float(scores.lengths.mean()),
            "returns": scores.returns.tolist(),
            "seed": options.seed,
            "epsilon": config.evaluation.epsilon,
            "checkpoint": checkpoint,
            "trained_env_steps": trained_steps,
        }
        (building / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        facts = CardFacts(scores, options.seed, checkpoint, trained_steps, video)
        (building / CARD_FILE).write_text(model_card(config, facts))
        size = sum(file.stat().st_size for file in building.iterdir())
        _move_into_place(building, destination)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return Exported(scores, video_note, size)


def _move_into_place(building: Path, destination: Path) -> None:
    """Rename the complete folder `building` to `destination`; an old folder there (empty, or
    replaced with --force) is renamed aside first and removed once the new one is in place."""
    old = temporary_sibling(destination) if destination.exists() else None
    if old is not None:
        os.replace(destination, old)
    try:
        os.replace(building, destination)
    except BaseException:
        if old is not None:
            os.replace(old, destination)
        raise
    if old is not None:
        shutil.rmtree(old)


def _record_replay(config: Config, weights: Weights, path: Path, seed: int, source: str) -> str | None:
    """Write one greedy episode, the evaluation's first, to `path`; or return why not (an env
    that does not render, a missing package), which the export states instead of failing."""
    from distdqn.tools.play import GreedyPlayer
    from distdqn.tools.video import Mp4Writer, require_encoder

    try:
        require_encoder(f"the {VIDEO_FILE} of an export")
        player = GreedyPlayer(config, weights, render=True, source=source)
    except (EnvError, UserError) as error:
        return f"no {VIDEO_FILE}: {error}"
    try:
        with Mp4Writer(path, player.default_fps()) as video:
            player.episode(env_seeds(seed, "evaluator", 0, 1)[0], REPLAY_STEPS, [video])
    except EnvError as error:
        return f"no {VIDEO_FILE}: {error}"
    finally:
        player.env.close()
    return None


def is_exported(path: Path) -> bool:
    """Whether `path` is a folder `export` wrote (or a copy, from the Hub say): it holds
    model.safetensors and config.toml. `read_exported` checks the rest."""
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def exported_config(path: Path) -> Config:
    """The config of the exported folder `path`, read without making its env or importing
    anything (to check its env id, or register an env object under it, before `read_exported`)."""
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path} is no exported model: it holds no {CONFIG_FILE}")
    try:
        return load_config_toml(path / CONFIG_FILE)
    except ConfigError as error:
        raise CheckpointError(f"exported model {path}: {error}") from None


def read_exported(
    path: Path, allow_import: Collection[str] = (), flag: str = "allow_import="
) -> tuple[Config, Weights]:
    """The config and online weights (version 0) of the exported folder `path`, or a one-line
    `CheckpointError` saying what does not fit. An env id `module:Name` would import `module`
    when its env is made, so it is refused before then unless `module` is in `allow_import`
    (`flag` says how the caller allows it: see distdqn.config.trust)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    config = exported_config(path)
    refuse_unrequested_imports(config, allow_import, (), path / CONFIG_FILE, flag)
    if not (path / MODEL_FILE).is_file():
        raise CheckpointError(f"{path} is no exported model: it holds no {MODEL_FILE}")
    expected = _network_tensors(config)
    model = path / MODEL_FILE
    limit = sum(int(np.prod(shape)) * 4 for shape in expected.values()) + MAX_HEADER_BYTES
    if model.stat().st_size > limit:
        raise CheckpointError(
            f"exported model {path}: {MODEL_FILE} is larger than its config's network ({limit} bytes)"
        )
    try:
        found = {}
        with safe_open(model, "numpy") as file:  # reads the header only
            names = file.keys()
            for name in names:
                tensor = file.get_slice(name)
                found[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
        wanted = {name: (shape, "F32") for name, shape in expected.items()}
        if found != wanted:
            raise CheckpointError(
                f"exported model {path}: {MODEL_FILE} holds {_listed(found)}; "
                f"its config's network has {_listed(wanted)}"
            )
        tensors = load_file(model)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"exported model {path}: {MODEL_FILE} is corrupt ({error})") from None
    bad = [name for name, array in tensors.items() if not np.isfinite(array).all()]
    if bad:
        raise CheckpointError(f"exported model {path}: tensors {bad[:3]} hold NaN or inf")
    return config, Weights(0, tensors)


def _network_tensors(config: Config) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the Q-network `config` builds (float32 all)."""
    from distdqn.envs import env_spaces, frame_box, policy_space
    from distdqn.networks import build_q_network

    frame_space, action_space = env_spaces(config.env)
    network = build_q_network(config.network, policy_space(config.env, frame_box(frame_space)), action_space)
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}


def _listed(tensors: dict[str, tuple[tuple[int, ...], str]]) -> str:
    shown = ", ".join(f"{name} {list(shape)} {dtype}" for name, (shape, dtype) in sorted(tensors.items())[:4])
    return shown + (f" and {len(tensors) - 4} more" if len(tensors) > 4 else "") if tensors else "no tensors"
