"""The exact state of a vector env's sub-envs as plain data, so that a resumed run steps on bit for bit.

A checkpoint must never run code on load, so no pickle: the state is made only of JSON values (dicts
with str keys, lists, str, int, float, bool, None) and numeric or bool NumPy arrays, which the caller
writes to .npy files. That is possible only for envs whose whole state is such data, and which envs
those are is decided by one general rule, not by a list of ids: walk each sub-env's wrapper chain
(`env.env` down to the unwrapped env); every instance attribute of every layer, apart from the
structural ones in `STRUCTURAL`, must be a plain value: None, bool, int, float, str, a NumPy scalar,
a NumPy array holding no objects, an `np.random.Generator` or `np.random.RandomState` over one of
NumPy's bit generators, or a tuple, list or dict of plain values. One other value anywhere (an
emulator, a physics world, a game object, a deque, a pygame surface) and the vector env is not
captured. Neither is it when a layer keeps attributes in __slots__ (outside what we read), nor when
one mutable value is reachable from two places: restored, it would be two values, and an in-place
change would no longer reach both.

Values keep their exact types on restore, since envs compare and format them: a tuple stays a tuple
and an np.int64 an np.int64. Tuples, dicts, NumPy scalars, text arrays and random generators are
written as one-key dicts naming what they are; lists and arrays as themselves.

What the rule cannot see: class attributes or module globals that an env changes, and the seed
sequence of a Generator's bit generator (only `spawn` reads it). Gymnasium's own envs use neither.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv

from distdqn.errors import CheckpointError

STRUCTURAL = frozenset(
    {
        "action_space",
        "observation_space",
        "_action_space",
        "_observation_space",
        "spec",
        "_cached_spec",
        "metadata",
        "_metadata",
        "render_mode",
        "_saved_kwargs",
    }
)
"""Instance attributes that are configuration, not state: the spaces, the registration spec, the
metadata, the render mode and the constructor arguments a wrapper records (`RecordConstructorArgs`).
A fresh env made from the same config has them equal, so they are neither captured nor restored;
nor, with the spaces, is the RNG `space.sample()` draws from: the envs here never sample their own
spaces when they step (one that did would resume with a fresh RNG, unnoticed). A wrapper's link to
the env it wraps, `env`, is structural too: it is walked as the next layer."""

CONSTANT_ATTRIBUTES = "constant_attributes"
"""An env class may name, in a class attribute of this name, instance attributes that its constructor
makes from its arguments and that never change (Recommend-v0's catalog): configuration, not state,
so a checkpoint does not carry a copy per env of what a fresh env rebuilds (13 MB an env for a
catalog of 10^6 items)."""

BIT_GENERATORS: dict[str, type[np.random.BitGenerator]] = {
    bit_generator.__name__: bit_generator
    for bit_generator in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64)
}
"""NumPy's bit generators, by the name a state is stored under: a restored generator is only ever one of these."""

_ARRAY_KINDS = "biufc"
"""Dtype kinds of arrays stored as they are: bool and numbers."""
_TEXT_KINDS = "SU"
"""Dtype kinds of arrays stored as their raw bytes, with their dtype: bytes and str."""
_SCALAR_KINDS = "biufU"
"""Dtype kinds of NumPy scalars stored as JSON numbers or strings (see `_is_json_scalar`)."""


class _NotPlain(Exception):
    """A value that plain data cannot hold: the env cannot be captured."""


def capture_vector_env(env: object) -> dict[str, Any] | None:
    """The state of `env`'s sub-envs and of its own autoreset flags, or None when the env cannot be
    captured exactly (see the module docstring; an EnvPool batch never can)."""
    if type(env) is not SyncVectorEnv:
        return None
    encoder = _Encoder()
    try:
        envs = [[_capture_layer(layer, encoder) for layer in _layers(sub_env)] for sub_env in env.envs]
    except _NotPlain:
        return None
    return {
        "autoreset_mode": env.autoreset_mode.value,
        # with next-step autoreset, the one thing SyncVectorEnv carries from step to step: which envs
        # reset on the next step (its other buffers are rewritten for every env on every step)
        "autoreset_envs": env._autoreset_envs.copy(),
        "envs": envs,
    }


def restore_vector_env(env: object, state: dict[str, Any]) -> None:
    """Put a freshly made `env` (same config) into a captured `state`. Raises `CheckpointError`,
    having changed nothing, when the state does not fit the env: it may set only attributes the
    env has as data (never one that names a method, such as `step`), and every random generator's
    state must be one its bit generator accepts (NumPy checks it, before anything is set)."""
    if type(env) is not SyncVectorEnv:
        raise CheckpointError(f"cannot restore env state into a {type(env).__name__}: only a SyncVectorEnv")
    try:
        autoreset_envs, updates = _decode_for(env, state)
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointError(f"env state is malformed: {type(error).__name__} {detail}".rstrip()) from None
    for layer, attributes in updates:
        vars(layer).update(attributes)
    env._autoreset_envs = autoreset_envs


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrapper chain from the outermost wrapper down to the unwrapped env."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _class_name(layer: object) -> str:
    return f"{type(layer).__module__}.{type(layer).__qualname__}"


def _chain(class_names: list[Any]) -> str:
    """A wrapper chain in one line, outermost first: TimeLimit<OrderEnforcing<...<CartPoleEnv."""
    return "<".join(str(name).rsplit(".", 1)[-1] for name in class_names)


def _structural(layer: gym.Env) -> frozenset[str]:
    """The names of `layer`'s attributes that are not state: `STRUCTURAL`, a wrapper's `env`, and
    what the layer's class names in `constant_attributes`."""
    constant = frozenset(getattr(type(layer), CONSTANT_ATTRIBUTES, ()))
    return STRUCTURAL | constant | ({"env"} if isinstance(layer, gym.Wrapper) else set())


def _state_attributes(layer: gym.Env) -> dict[str, Any]:
    """A layer's instance attributes that are state, not structure."""
    structural = _structural(layer)
    return {name: value for name, value in vars(layer).items() if name not in structural}


def _holds_data(layer: gym.Env, name: object) -> bool:
    """Whether restoring may set `layer`'s attribute `name`: data it holds (an instance
    attribute, or a plain class default such as gym.Env's `_np_random = None`) or a name its
    class does not use at all (state an env makes as it runs, such as MountainCar's `state` in
    `reset`); never a name its class gives a method, a property or another descriptor (`step`
    set to 1 broke the next step), nor one that holds a callable, nor a dunder name."""
    if type(name) is not str or name.startswith("__"):
        return False
    if name in vars(layer):
        return not callable(vars(layer)[name])
    for klass in type(layer).__mro__:
        if name in vars(klass):
            default = vars(klass)[name]
            return not callable(default) and not hasattr(type(default), "__get__")
    return True


def _has_slots(cls: type) -> bool:
    """Whether instances of `cls` may keep attributes outside their __dict__."""
    return any(
        set([slots] if isinstance(slots, str) else slots) - {"__dict__", "__weakref__"}
        for slots in (vars(klass).get("__slots__", ()) for klass in cls.__mro__)
    )


def _capture_layer(layer: gym.Env, encoder: _Encoder) -> dict[str, Any]:
    if _has_slots(type(layer)):
        raise _NotPlain
    attributes = {}
    for name, value in _state_attributes(layer).items():
        if type(name) is not str:
            raise _NotPlain
        attributes[name] = encoder.encode(value)
    return {"class": _class_name(layer), "attributes": attributes}


def _root(array: np.ndarray) -> object:
    """The object owning an array's memory: views of one buffer are one value."""
    owner: object = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return owner


class _Encoder:
    """Turns plain values into plain data, refusing any mutable value it meets twice."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def _once(self, value: object) -> None:
        if id(value) in self._seen:
            raise _NotPlain
        self._seen.add(id(value))

    def encode(self, value: Any) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        if kind is tuple:
            return {"tuple": [self.encode(item) for item in value]}
        if kind is list:
            self._once(value)
            return [self.encode(item) for item in value]
        if kind is dict:
            self._once(value)
            return {"dict": [[self.encode(key), self.encode(item)] for key, item in value.items()]}
        if kind is np.ndarray:
            self._once(_root(value))
            return _encode_array(value)
        if _is_json_scalar(value):
            return {"numpy": value.dtype.str, "value": value.item()}
        if kind is np.random.Generator:
            self._once(value)
            self._once(value.bit_generator)
            if type(value.bit_generator) not in BIT_GENERATORS.values():
                raise _NotPlain
            # the state dict is made afresh on each read: encoded on its own, it shares nothing with the env
            return {
                "generator": type(value.bit_generator).__name__,
                "state": _Encoder().encode(value.bit_generator.state),
            }
        if kind is np.random.RandomState:
            self._once(value)
            state = value.get_state(legacy=False)
            if state["bit_generator"] not in BIT_GENERATORS:
                raise _NotPlain
            return {"random_state": state["bit_generator"], "state": _Encoder().encode(state)}
        raise _NotPlain


def _is_json_scalar(value: object) -> bool:
    """Whether `value` is a NumPy scalar that a JSON number or string holds exactly: a bool, an
    integer, a float of up to 64 bits or a str."""
    if not isinstance(value, np.generic) or value.dtype.kind not in _SCALAR_KINDS:
        return False
    return value.dtype.kind != "f" or value.dtype.itemsize <= 8


def _encode_array(array: np.ndarray) -> Any:
    if array.dtype.kind in _ARRAY_KINDS:
        return array.copy(order="K")
    if array.dtype.kind in _TEXT_KINDS and array.dtype.itemsize:
        raw = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        return {"text_array": array.dtype.str, "shape": list(array.shape), "bytes": raw}
    raise _NotPlain


def _decode(node: Any) -> Any:
    """The value `_Encoder.encode` made `node` from, as new objects of the same types."""
    if node is None or type(node) in (bool, int, float, str):
        return node
    if type(node) is list:
        return [_decode(item) for item in node]
    if isinstance(node, np.ndarray) and node.dtype.kind in _ARRAY_KINDS:
        return np.array(node, copy=True, order="K")
    keys = sorted(node) if type(node) is dict else [type(node).__name__]
    if keys == ["tuple"]:
        return tuple(_decode(item) for item in node["tuple"])
    if keys == ["dict"]:
        return {_decode(key): _decode(item) for key, item in node["dict"]}
    if keys == ["numpy", "value"]:
        return _dtype(node["numpy"], _SCALAR_KINDS).type(node["value"])
    if keys == ["bytes", "shape", "text_array"]:
        raw = np.asarray(node["bytes"], np.uint8).copy()
        return raw.view(_dtype(node["text_array"], _TEXT_KINDS)).reshape(tuple(node["shape"]))
    if keys == ["generator", "state"]:
        return np.random.Generator(_bit_generator(node["generator"], _decode(node["state"])))
    if keys == ["random_state", "state"]:
        random_state = np.random.RandomState(_bit_generator(node["random_state"], None))
        random_state.set_state(_decode(node["state"]))
        return random_state
    raise TypeError(f"no value is stored as {keys}")


def _dtype(name: str, kinds: str) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in kinds:
        raise TypeError(f"dtype {name} is not one of the kinds {kinds}")
    return dtype


def _bit_generator(name: str, state: dict[str, Any] | None) -> np.random.BitGenerator:
    if name not in BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r}")
    bit_generator = BIT_GENERATORS[name]()
    if state is not None:
        bit_generator.state = state
    return bit_generator


def _decode_for(env: SyncVectorEnv, state: dict[str, Any]) -> tuple[np.ndarray, list[tuple[gym.Env, dict[str, Any]]]]:
    """Everything restore sets, decoded and checked against `env` before any of it is set."""
    mode = env.autoreset_mode.value
    if state["autoreset_mode"] != mode:
        raise CheckpointError(f"env state has autoreset mode {state['autoreset_mode']}, this env {mode}")
    if len(state["envs"]) != env.num_envs:
        raise CheckpointError(f"env state holds {len(state['envs'])} envs, this vector env has {env.num_envs}")
    autoreset_envs = state["autoreset_envs"]
    if not isinstance(autoreset_envs, np.ndarray) or autoreset_envs.dtype != np.bool_:
        raise TypeError("autoreset_envs is not a bool array")
    if autoreset_envs.shape != (env.num_envs,):
        raise ValueError(f"autoreset_envs has shape {autoreset_envs.shape}, expected ({env.num_envs},)")
    updates = []
    for sub_env, layer_states in zip(env.envs, state["envs"], strict=True):
        layers = _layers(sub_env)
        captured, made = [layer["class"] for layer in layer_states], [_class_name(layer) for layer in layers]
        if captured != made:
            raise CheckpointError(f"env state is of {_chain(captured)}, this env is {_chain(made)}")
        for layer, layer_state in zip(layers, layer_states, strict=True):
            attributes = layer_state["attributes"]
            if type(attributes) is not dict:
                raise TypeError("a layer's attributes are not a dict")
            structural = _structural(layer) & set(attributes)
            if structural:
                raise CheckpointError(f"env state sets structural attributes {sorted(structural)}")
            foreign = sorted(str(name)[:40] for name in attributes if not _holds_data(layer, name))
            if foreign:
                raise CheckpointError(f"env state of {_chain(made)} sets {foreign[:3]}, which are not its data")
            missing = set(_state_attributes(layer)) - set(attributes)
            if missing:
                raise CheckpointError(f"env state of {_chain(made)} lacks attributes {sorted(missing)}")
            updates.append((layer, {name: _decode(node) for name, node in attributes.items()}))
    return autoreset_envs.copy(), updates
