"""The Python API, shaped like Stable-Baselines3's `DQN`:

    from distdqn import DQN

    model = DQN("CartPole-v1", seed=0)
    model.learn(50_000)                     # a second call trains 50,000 env steps more
    action, _ = model.predict(observation)  # one observation or a batch
    model.evaluate(episodes=10)
    model.save("cartpole")                  # a checkpoint: weights, optimizer, counters, config
    model = DQN.load("cartpole")            # or a run directory, or an exported model

It wires nothing of its own. The config is resolved as `distdqn train` resolves it (defaults, the
env's preset, `config`, then the keyword arguments), training is `distdqn.run.train` (`train` for
the first call, `resume` to continue), scoring is `distdqn.run.greedy`, as for `distdqn evaluate`,
and a model is a run directory plus the checkpoint it acts with.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from distdqn.config import (
    Config,
    field_paths,
    merge_fields,
    read_config_file,
    resolve_config,
    suggest_field,
    update_config,
)
from distdqn.config.trust import refuse_unrequested_imports
from distdqn.envs import env_spaces, frame_box, make_env, num_actions, policy_space
from distdqn.envs.custom import NAMESPACE, register_env_object
from distdqn.envs.observations import EncodeObservations
from distdqn.errors import CheckpointError, ConfigError, UserError
from distdqn.networks import build_q_network, load_weights
from distdqn.run.callbacks import CallbackLike, as_callback
from distdqn.run.counters import Counters
from distdqn.run.greedy import read_policy, score
from distdqn.run.run_dir import default_run_dir
from distdqn.run.train import resume, train
from distdqn.seeding import EVAL_SEED
from distdqn.storage.checkpoint import adopt_checkpoint, copy_checkpoint, load_checkpoint
from distdqn.storage.object_store import is_remote, local_checkpoint, run_checkpoint
from distdqn.tools.export import exported_config, is_exported, read_exported
from distdqn.types import EvalResult, Weights

EnvLike = str | tuple[str, Mapping[str, Any]] | gym.Env | Callable[[], gym.Env] | None
ConfigLike = Config | str | Path | Mapping[str, Any] | None


class DQN:
    """A DQN agent: its config, the run directory it trains in, and the checkpoint it acts with.

    `env`: a Gymnasium id (`"CartPole-v1"`), an id with keyword arguments
    (`("FrozenLake-v1", {"is_slippery": False})`), a function that makes an env, or an env
    instance (deep-copied for each env slot); None takes the config's env. Env objects are
    registered under an id of their own (see distdqn.envs.custom) and work on every runtime
    where they pickle.
    `config`: a `Config`, a TOML/YAML file, or a nested dict of fields (as in a config file).
    `seed`, `runtime` (`"inline"`, `"threads"` or `"ray"`; None: the config's), and `**overrides`:
    config fields, named by their section (`algorithm={"lr": 5e-4}`), by their own name where it
    is unique (`lr=5e-4`, `batch_size=64`, `total_steps=...`), or by a path with `__`
    (`evaluation__every_steps=5000`).
    `run_dir`: where the run's files go (a path or a URI such as s3://bucket/run); default
    runs/ENV-sSEED-TIME, as for `distdqn train`.
    """

    def __init__(
        self,
        env: EnvLike = None,
        config: ConfigLike = None,
        seed: int | None = None,
        runtime: str | None = None,
        run_dir: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        env_id, env_kwargs = _env_id(env)
        fields = _nested_fields(overrides)
        if env_kwargs is not None:
            fields = merge_fields(fields, {"env": {"kwargs": dict(env_kwargs)}})
        if seed is not None:
            fields = merge_fields(fields, {"seed": seed})
        if runtime is not None:
            fields = merge_fields(fields, {"placement": {"runtime": runtime}})
        self.config = _resolve(env_id, config, fields)
        self.run_dir: Path | str = run_dir if run_dir is not None else default_run_dir(self.config)
        self.counters = Counters()
        """The run's progress (env steps, updates, best evaluation) after the last `learn`."""
        self._trained = False  # run_dir holds a run that `learn` continues
        self._adopt: Path | str | None = None  # a checkpoint the first `learn` continues from
        self._acting: Path | str | None = None  # the checkpoint `predict` and `evaluate` use
        self._policy: _Greedy | None = None
        self._exported: Path | None = None  # an exported model (`distdqn export`) this one acts as
        self._allow_import: tuple[str, ...] = ()  # modules DQN.load was told to trust

    # -- training --------------------------------------------------------------------------
    def learn(self, total_steps: int, callback: CallbackLike = None, progress_bar: bool | None = None) -> DQN:
        """Train `total_steps` env steps more (all actors together), then return self.

        The first call trains a new run in `run_dir`; each later call continues it exactly where
        it stopped (replay and all, where checkpoint.replay stores it). `callback`: a
        `distdqn.Callback`, a list of them, or a function of each metrics record; returning False
        stops training (the run ends as at its step budget, and `learn` continues it later).
        Ctrl-C stops the run cleanly, with `latest` written, then raises KeyboardInterrupt.
        `progress_bar`: True redraws a progress line, False shows none; None keeps
        `logging.progress` (by default a bar on a terminal, plain lines elsewhere).
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise UserError(f"total_steps must be a positive integer, got {total_steps!r}")
        if self._exported is not None:
            raise UserError(
                f"{self._exported} is an exported model: its online network only, without the optimizer, target "
                "and counters a run goes on from; train its run on, or train anew with "
                f"DQN(config='{self._exported / 'config.toml'}')"
            )
        hooks = as_callback(callback)
        if progress_bar is not None:
            self.config = update_config(
                self.config, {"logging": {"progress": "live" if progress_bar else "none"}}, "learn"
            )
        with _signal_handlers_kept():
            if self._trained:
                self.config = update_config(
                    self.config, {"total_steps": self.counters.env_steps + total_steps}, "learn"
                )
                result = resume(self.run_dir, self.config, callback=hooks)
            elif self._adopt is not None:
                if is_remote(self.run_dir):
                    raise UserError("a loaded checkpoint continues in a local run_dir, not on object storage")
                self.config = update_config(
                    self.config, {"total_steps": self.counters.env_steps + total_steps}, "learn"
                )
                with local_checkpoint(self._adopt) as source:
                    adopt_checkpoint(Path(source), Path(self.run_dir) / "checkpoints", keep=self.config.checkpoint.keep)
                result = resume(self.run_dir, self.config, adopted=True, callback=hooks)
            else:
                self.config = update_config(self.config, {"total_steps": total_steps}, "learn")
                result = train(self.config, self.run_dir, callback=hooks)
        self._trained, self._adopt = True, None
        self.run_dir, self.counters = result.run_dir, result.counters
        self._acting, self._policy = None, None  # act with the new `latest`
        if result.stopped_by == "SIGINT":
            raise KeyboardInterrupt(f"training stopped at env step {self.counters.env_steps}; learn() continues it")
        if result.stopped_by is not None:
            raise SystemExit(128 + signal.Signals[result.stopped_by].value)
        return self

    @property
    def num_timesteps(self) -> int:
        """Env steps trained so far (Stable-Baselines3's name)."""
        return self.counters.env_steps

    # -- acting ----------------------------------------------------------------------------
    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, None]:
        """The greedy action for one observation (an int), or for a batch of them (an array).

        Observations are what `make_env()` returns: for most envs what the env itself returns;
        with `env.frame_stack > 1` (Atari, MinAtar) the stacked frames, and for Dict, Tuple or
        Discrete observation spaces either the env's own observation or its encoded vector.
        `deterministic=False` acts epsilon-greedily with `algorithm.eps_end`. `state` and
        `episode_start` are accepted for Stable-Baselines3's signature; a Q-network has no state.
        """
        policy = self._greedy()
        batch, single = policy.batch(observation)
        with torch.inference_mode():
            actions = policy.q_network(torch.as_tensor(batch)).numpy().argmax(axis=1)
        if not deterministic:
            explore = policy.rng.random(len(actions)) < self.config.algorithm.eps_end
            actions = np.where(explore, policy.rng.integers(policy.actions, size=len(actions)), actions)
        return (int(actions[0]) if single else actions), None

    @property
    def q_network(self) -> torch.nn.Module:
        """The Q-network `predict` runs (on the CPU, gradients off): observations in, one value per action out."""
        return self._greedy().q_network

    def evaluate(self, episodes: int = 10, seed: int = EVAL_SEED) -> EvalResult:
        """Returns and lengths of `episodes` episodes of the greedy policy (evaluation.epsilon),
        exactly as `distdqn evaluate` plays them; `.mean_return` and `.std_return` summarise."""
        config, weights, source = self._weights()
        return score(config, weights, episodes, seed, source)

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """One env as the policy sees it: the config's env (Atari preprocessing, encoded
        observations), with frames stacked when `env.frame_stack > 1`."""
        env_config = self.config.env
        if render_mode is not None:
            env_config = env_config.model_copy(update={"kwargs": {**env_config.kwargs, "render_mode": render_mode}})
        env = make_env(env_config)
        if env_config.frame_stack > 1:
            env = gym.wrappers.FrameStackObservation(env, env_config.frame_stack, padding_type="reset")
        return env

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path, replay: bool = False) -> Path:
        """Write the model as a standalone checkpoint directory at `path` (replacing a checkpoint
        there, atomically): weights, optimizer, counters and config, with `replay` also every
        role's state, so that `DQN.load(path).learn(...)` goes on exactly. Returns the path."""
        if self._exported is not None:
            raise UserError(f"{self._exported} is an exported model, not a checkpoint: copy its folder instead")
        source = self._checkpoint()
        destination = Path(path)
        with local_checkpoint(source) as directory:
            copy_checkpoint(directory, destination, replay=replay)
        return destination

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: gym.Env | Callable[[], gym.Env] | None = None,
        checkpoint: str = "latest",
        allow_import: Sequence[str] = (),
        run_dir: str | Path | None = None,
    ) -> DQN:
        """A model from a run directory (it acts with `checkpoint`, "latest" or "best", and
        `learn` continues the run in place), a checkpoint directory (`save`'s, or a run's
        checkpoints/best; `learn` continues it in a new `run_dir`), or an exported model
        (`distdqn export`, or its download from the Hub: it acts and is evaluated). Run and
        checkpoint paths may be URIs (s3://...).

        `env`: the function or instance a model trained on a Python env object was made with
        (registered again under the model's env id). An env id `module:Name` read from the
        files would import `module`: name it in `allow_import` if you trust it.
        """
        if checkpoint not in ("latest", "best"):
            raise UserError(f"checkpoint must be 'latest' or 'best', got {checkpoint!r}")
        exported = Path(path) if not is_remote(path) and is_exported(Path(path)) else None
        chosen = None if exported is not None else run_checkpoint(path, checkpoint)
        if exported is not None:
            config = exported_config(exported)
        else:
            config = read_policy(chosen if chosen is not None else path)[0]
        refuse_unrequested_imports(config, allow_import, (), path, "allow_import=")
        if env is not None:
            register_env_object(env, config.env.id)
        elif config.env.id.startswith(f"{NAMESPACE}/") and config.env.id not in gym.registry:
            raise UserError(
                f"{path} was trained on a Python env object ({config.env.id}); pass it again: DQN.load(path, env=...)"
            )
        model = cls.__new__(cls)
        model.config = config
        model._policy, model._exported, model._allow_import = None, exported, tuple(allow_import)
        if exported is not None:
            model.run_dir, model._trained, model._adopt, model._acting = exported, False, None, exported
            model.counters = Counters()
        elif chosen is not None:
            model.run_dir, model._trained, model._adopt, model._acting = path, True, None, chosen
            model.counters = _saved_counters(run_checkpoint(path, "latest") or chosen)
        else:
            model.run_dir = run_dir if run_dir is not None else default_run_dir(config)
            model._trained, model._adopt, model._acting = False, path, path
            model.counters = _saved_counters(path)
        return model

    # -- inside ----------------------------------------------------------------------------
    def _checkpoint(self) -> Path | str:
        """The checkpoint the model acts with: the run's `latest` unless loaded otherwise."""
        if self._acting is not None:
            return self._acting
        if not self._trained:
            raise UserError("the model has not been trained yet: call learn() first, or DQN.load a saved one")
        latest = run_checkpoint(self.run_dir, "latest")
        assert latest is not None
        return latest

    def _weights(self) -> tuple[Config, Weights, Path | str]:
        source = self._checkpoint()
        if self._exported is not None:
            config, weights = read_exported(self._exported, self._allow_import)
            return config, weights, source
        config, weights = read_policy(source)
        return self.config if self._trained else config, weights, source

    def _greedy(self) -> _Greedy:
        if self._policy is None:
            config, weights, source = self._weights()
            self._policy = _Greedy(config, weights, source)
        return self._policy


class _Greedy:
    """The Q-network `predict` runs, on the CPU, and what it needs to read observations."""

    def __init__(self, config: Config, weights: Weights, source: Path | str) -> None:
        frame_space, action_space = env_spaces(config.env)
        self.space = policy_space(config.env, frame_space)
        self.actions = num_actions(action_space)
        self.q_network = build_q_network(config.network, self.space, action_space)
        self.q_network.requires_grad_(False)
        try:
            load_weights(self.q_network, weights.tensors)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {source}: {error}") from None
        self.rng = np.random.default_rng()
        self.encoder: EncodeObservations | None = None
        if config.env.frame_stack == 1:
            env = make_env(config.env)
            self.encoder = env if isinstance(env, EncodeObservations) else None
            env.close()

    def batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        """`observation` as a batch the network takes, and whether it was a single one."""
        shape = frame_box(self.space).shape
        if self.encoder is not None and not _is_array_of(observation, shape):
            raw = self.encoder.env.observation_space
            items = [observation] if raw.contains(observation) else list(observation)
            return np.stack([self.encoder.observation(item) for item in items]), raw.contains(observation)
        try:
            array = np.asarray(observation, dtype=frame_box(self.space).dtype)
        except (TypeError, ValueError) as error:
            raise UserError(f"observation is not an array of numbers: {error}") from None
        if array.shape == shape:
            return array[None], True
        if array.shape[1:] == shape:
            return array, False
        raise UserError(f"observation of shape {array.shape} fits neither {shape} nor a batch of it")


def _is_array_of(observation: Any, shape: tuple[int, ...]) -> bool:
    array = np.asarray(observation) if isinstance(observation, (np.ndarray, list)) else None
    return array is not None and array.dtype != object and array.shape[-len(shape) :] == shape


def _saved_counters(source: Path | str) -> Counters:
    """The counters a checkpoint carries (where `learn` goes on from)."""
    with local_checkpoint(source) as directory:
        saved = load_checkpoint(directory).state.get("counters", {})
    known = {key: value for key, value in saved.items() if key in Counters.__dataclass_fields__}
    return Counters(**known)


def _env_id(env: EnvLike) -> tuple[str | None, Mapping[str, Any] | None]:
    """The config's env id for `env`, and its keyword arguments when given as `(id, kwargs)`."""
    if env is None or isinstance(env, str):
        return env, None
    if isinstance(env, tuple):
        if len(env) != 2 or not isinstance(env[0], str) or not isinstance(env[1], Mapping):
            raise UserError(f"env as a tuple must be (id, kwargs), got {env!r:.80}")
        return env[0], env[1]
    return register_env_object(env), None


def _resolve(env_id: str | None, config: ConfigLike, fields: dict[str, Any]) -> Config:
    if isinstance(config, Config):
        return update_config(config, merge_fields(fields, {"env": {"id": env_id}} if env_id else {}), "DQN(...)")
    if isinstance(config, Mapping):
        return resolve_config(env_id or config.get("env", {}).get("id"), None, (), merge_fields(dict(config), fields))
    if config is not None:
        read_config_file(Path(config))  # a missing or malformed file: one line naming it
        return resolve_config(env_id, Path(config), (), fields)
    return resolve_config(env_id, None, (), fields)


def _nested_fields(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments as a nested dict of config fields (see `DQN`)."""
    by_name: dict[str, list[str]] = {}
    for path in field_paths():
        by_name.setdefault(path.rpartition(".")[2], []).append(path)
    fields: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in Config.model_fields:
            path = key
        elif "__" in key:
            path = key.replace("__", ".")
        elif len(by_name.get(key, [])) == 1:
            path = by_name[key][0]
        elif key in by_name:
            named = ", ".join(by_name[key])
            raise ConfigError(
                f"{key}= is more than one field ({named}): name it as {by_name[key][0].replace('.', '__')}="
            )
        else:
            raise ConfigError(f"unknown config field {key}=" + suggest_field(key))
        *sections, name = path.split(".")
        nested: dict[str, Any] = {name: dict(value) if isinstance(value, Mapping) else value}
        for section in reversed(sections):
            nested = {section: nested}
        fields = merge_fields(fields, nested)
    return fields


class _signal_handlers_kept:
    """SIGINT and SIGTERM handlers as they were before `learn`: a run that was stopped by one
    leaves the process's handlers as its own (a CLI exits next), which in a notebook would
    swallow the next Ctrl-C."""

    def __enter__(self) -> None:
        self._kept = (
            {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
            if threading.current_thread() is threading.main_thread()
            else {}
        )

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._kept.items():
            signal.signal(number, handler)
