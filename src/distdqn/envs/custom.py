"""Envs given as Python objects rather than ids (`DQN(make_my_env)`, `DQN(env_instance)`).

A run's config names its env by id, so that every role makes its own copies and a checkpoint
says what it was trained on. An env object is therefore registered with gymnasium under an id
of its own, `distdqn-py/<Name>-v<N>`, in this process; on Ray every role's process registers the
run's spec before it builds its role (`register_specs`, called by the runtime's role host), so
a factory or instance that pickles works on any runtime. The id stays in the run's config:
`DQN.load(run, env=make_my_env)` registers the factory under it again in a new process.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from distdqn.errors import EnvError

NAMESPACE = "distdqn-py"
_specs: dict[str, EnvSpec] = {}
"""The ids this process registered for env objects, and their specs."""
_ids: dict[int, tuple[object, str]] = {}
"""Each env object registered without an id -> (the object, kept alive so that its `id()` stays
its own, and its id): an object given again keeps its id."""


def _name_of(env_object: object) -> str:
    """A readable id name: the factory's or the env class's name, made id-safe."""
    target = env_object if callable(env_object) and not isinstance(env_object, gym.Env) else type(env_object)
    name = getattr(target, "__name__", type(target).__name__)
    if name == "<lambda>":
        name = "Lambda"
    return re.sub(r"[^\w.]", "", name) or "Env"


def copy_of(instance: gym.Env) -> Callable[[], gym.Env]:
    """A factory of deep copies of `instance`: each role and each vector slot gets its own env,
    in the state the instance was given in (its wrappers included)."""

    def make() -> gym.Env:
        try:
            return copy.deepcopy(instance)
        except Exception as error:  # an env holding a window, a socket or a lock cannot be copied
            raise EnvError(
                f"cannot copy the env instance {type(instance).__name__} for each env slot ({error}); "
                "pass a function that makes the env instead"
            ) from None

    return make


def register_env_object(env_object: gym.Env | Callable[[], gym.Env], env_id: str | None = None) -> str:
    """Register a factory (called with no arguments) or an env instance, under `env_id` or a new
    id; return the id."""
    factory = copy_of(env_object) if isinstance(env_object, gym.Env) else env_object
    if not callable(factory):
        raise EnvError(f"env must be an id, (id, kwargs), an env or a function making one; got {env_object!r:.80}")
    if env_id is None and id(env_object) in _ids:
        return _ids[id(env_object)][1]
    if env_id is None:
        name = _name_of(env_object)
        version = sum(1 for known in _specs if known.startswith(f"{NAMESPACE}/{name}-v"))
        env_id = f"{NAMESPACE}/{name}-v{version}"
        _ids[id(env_object)] = (env_object, env_id)
    spec = EnvSpec(id=env_id, entry_point=factory)  # type: ignore[arg-type]  # any callable making an env
    register_specs([spec])
    _specs[env_id] = spec
    return env_id


def specs_for(env_id: str) -> list[EnvSpec]:
    """The spec a runtime sends to its roles' processes for a run of `env_id`: the env object's,
    when `env_id` is one registered here, else none (an id gymnasium knows by itself). Only the
    run's own is sent: another object registered in this process may not unpickle there."""
    return [_specs[env_id]] if env_id in _specs else []


def register_specs(specs: Iterable[EnvSpec]) -> None:
    """Make `specs` known to gymnasium in this process (replacing an id's earlier spec)."""
    for spec in specs:
        gym.registry[spec.id] = spec
