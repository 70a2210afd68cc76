"""Env state for exact resume: a vector env restored from plain data (JSON and .npy files, no pickle)
steps on exactly as the captured one; envs with state beyond plain data are not captured; a state
that does not fit the env is refused whole."""

import collections
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from distdqn.config import EnvConfig
from distdqn.envs import MAZE_ID, RECOMMEND_ID, make_env, make_vector_env
from distdqn.envs.env_state import BIT_GENERATORS, capture_vector_env, restore_vector_env
from distdqn.errors import CheckpointError

# Taxi-v3 cannot be made in gymnasium 1.4 (deprecated for v4); Blackjack-v1 adds Tuple observations
# and np.str_ values; FrozenLake-v1 is slippery, so its steps draw from the env's RNG
CAPTURABLE = [
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "FrozenLake-v1",
    "CliffWalking-v1",
    "Taxi-v4",
    "Blackjack-v1",
    MAZE_ID,
    RECOMMEND_ID,
]
NUM_ENVS = 3
MAX_EPISODE_STEPS = 100
"""Episodes of random play end within this, even CliffWalking's (a fall there restarts, not ends, them)."""


def _vector(env_id: str, num_envs: int = NUM_ENVS) -> SyncVectorEnv:
    env = make_vector_env(EnvConfig(id=env_id, max_episode_steps=MAX_EPISODE_STEPS), num_envs)
    assert isinstance(env, SyncVectorEnv)
    return env


def _through_files(state: dict[str, Any], directory: Path) -> dict[str, Any]:
    """`state` written as a checkpoint would be (arrays to .npy files, the rest to strict JSON) and read back."""
    arrays: list[np.ndarray] = []

    def split(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            assert node.dtype.kind in "biufc"
            arrays.append(node)
            return {"npy": len(arrays) - 1}
        if isinstance(node, dict):
            assert all(type(key) is str for key in node)
            return {key: split(value) for key, value in node.items()}
        if isinstance(node, list):
            return [split(value) for value in node]
        assert node is None or type(node) in (bool, int, float, str), type(node)
        return node

    text = json.dumps(split(state), allow_nan=False)
    for index, array in enumerate(arrays):
        np.save(directory / f"{index}.npy", array, allow_pickle=False)
    loaded = [np.load(directory / f"{index}.npy", allow_pickle=False) for index in range(len(arrays))]

    def join(node: Any) -> Any:
        if isinstance(node, dict):
            return loaded[node["npy"]] if list(node) == ["npy"] else {key: join(value) for key, value in node.items()}
        if isinstance(node, list):
            return [join(value) for value in node]
        return node

    return join(json.loads(text))


def _assert_same(x: Any, y: Any, where: str = "") -> None:
    """Equal values of exactly the same types, all the way down."""
    assert type(x) is type(y), f"{where}: {type(x).__name__} vs {type(y).__name__}"
    if isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), where
    elif isinstance(x, dict):
        assert list(x) == list(y), where
        for key in x:
            _assert_same(x[key], y[key], f"{where}.{key}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for index, (a, b) in enumerate(zip(x, y, strict=True)):
            _assert_same(a, b, f"{where}[{index}]")
    elif isinstance(x, np.random.Generator):
        _assert_same(x.bit_generator.state, y.bit_generator.state, where)
    elif isinstance(x, np.random.RandomState):
        _assert_same(x.get_state(legacy=False), y.get_state(legacy=False), where)
    else:
        assert x == y, where


def _random_actions(env: SyncVectorEnv, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(env.single_action_space.n, size=env.num_envs)


def _step_until_an_episode_ends(env: SyncVectorEnv, rng: np.random.Generator) -> None:
    """A random number of steps, then on until some episode has just ended (it restarts on the next step)."""
    for _ in range(rng.integers(3, 40)):
        env.step(_random_actions(env, rng))
    for _ in range(1000):
        _, _, terminated, truncated, _ = env.step(_random_actions(env, rng))
        if np.any(terminated | truncated):
            return
    raise AssertionError("no episode ended in 1000 steps")


def _assert_same_steps(a: SyncVectorEnv, b: SyncVectorEnv, rng: np.random.Generator, steps: int = 200) -> None:
    for step in range(steps):
        actions = _random_actions(a, rng)
        _assert_same(a.step(actions), b.step(actions), f"step {step}")


def _check_resume(env_id: str, directory: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _vector(env_id)
    a.reset(seed=[seed, seed + 10, seed + 20])
    _step_until_an_episode_ends(a, rng)
    assert a._autoreset_envs.any()  # captured mid-autoreset
    state = capture_vector_env(a)
    assert state is not None
    b = _vector(env_id)
    restore_vector_env(b, _through_files(state, directory))
    _assert_same(capture_vector_env(b), state, "recaptured")
    _assert_same_steps(a, b, rng)


@pytest.mark.parametrize("env_id", CAPTURABLE)
def test_restored_env_steps_on_exactly_as_the_captured_one(env_id: str, tmp_path: Path):
    _check_resume(env_id, tmp_path, seed=CAPTURABLE.index(env_id))


def test_infos_lives_carry_on(frames_id: str, tmp_path: Path):
    _check_resume(frames_id, tmp_path, seed=7)


def test_a_catalog_its_env_marks_constant_is_not_captured():
    """Recommend-v0's catalog is configuration (`constant_attributes`): the state of 3 envs of 100,000
    items stays small, and a fresh env rebuilds the catalog (the test above restores and steps on)."""
    env = make_vector_env(EnvConfig(id=RECOMMEND_ID, kwargs={"num_items": 100_000}), NUM_ENVS)
    env.reset(seed=0)
    state = capture_vector_env(env)
    assert state is not None
    text = json.dumps(state, default=lambda value: value.tolist() if isinstance(value, np.ndarray) else str(value))
    assert "item_quality" not in text and len(text) < 50_000


def test_state_right_after_reset_restores(tmp_path: Path):
    a, b = _vector("FrozenLake-v1"), _vector("FrozenLake-v1")
    a.reset(seed=3)
    state = capture_vector_env(a)
    assert state is not None and not state["autoreset_envs"].any()
    restore_vector_env(b, _through_files(state, tmp_path))
    _assert_same_steps(a, b, np.random.default_rng(3))


@pytest.mark.parametrize("name", sorted(BIT_GENERATORS))
def test_every_numpy_bit_generator_restores(name: str, tmp_path: Path):
    a, b = _vector("FrozenLake-v1"), _vector("FrozenLake-v1")
    a.reset(seed=0)
    for index, sub_env in enumerate(a.envs):
        sub_env.unwrapped.np_random = np.random.Generator(BIT_GENERATORS[name](index))
    _step_until_an_episode_ends(a, np.random.default_rng(1))
    state = capture_vector_env(a)
    assert state is not None
    restore_vector_env(b, _through_files(state, tmp_path))
    assert type(b.envs[0].unwrapped.np_random.bit_generator) is BIT_GENERATORS[name]
    _assert_same_steps(a, b, np.random.default_rng(2))


def test_values_keep_their_types(tmp_path: Path):
    values = {
        "numbers": (1, -2.5, True, None, "text", 2**70, -0.0),
        "numpy": [np.int64(-3), np.uint64(2**64 - 1), np.float32(0.1), np.float16(1.5), np.bool_(True), np.str_("♠")],
        (3, "key"): {7: [], "nested": ((), [()])},
        "arrays": [np.arange(6, dtype=np.int16).reshape(2, 3), np.asfortranarray(np.eye(3)), np.array(1.5)],
        "text": [np.array([[b"S", b"F"], [b"H", b"G"]]), np.array(["ab", "♣"])],
        "rngs": [np.random.RandomState(4), np.random.Generator(np.random.Philox(5))],
    }
    a, b = _vector(MAZE_ID, num_envs=1), _vector(MAZE_ID, num_envs=1)
    a.reset(seed=0)
    a.envs[0].unwrapped.extra = values
    state = capture_vector_env(a)
    assert state is not None
    restore_vector_env(b, _through_files(state, tmp_path))
    _assert_same(b.envs[0].unwrapped.extra, values)
    assert b.envs[0].unwrapped.extra["arrays"][1].flags.f_contiguous


@pytest.mark.parametrize(
    "value",
    [
        collections.deque([1, 2]),
        np.array([None]),
        gym.spaces.Discrete(2),
        np.random.Generator(np.random.PCG64(0)).bit_generator,
        lambda: None,
    ],
    ids=["deque", "object array", "space", "bare bit generator", "function"],
)
def test_one_value_beyond_plain_data_and_the_env_is_not_captured(value: Any):
    env = _vector("CartPole-v1")
    env.reset(seed=0)
    assert capture_vector_env(env) is not None
    env.envs[2].unwrapped.extra = {"deep": [value]}
    assert capture_vector_env(env) is None


def _same_array(envs: list[gym.Env]) -> None:
    envs[0].unwrapped.history = envs[0].unwrapped.state


def _view(envs: list[gym.Env]) -> None:
    envs[0].unwrapped.history = envs[0].unwrapped.state[1:]


def _list_in_two_envs(envs: list[gym.Env]) -> None:
    envs[0].unwrapped.history = envs[1].unwrapped.history = [1]


@pytest.mark.parametrize("share", [_same_array, _view, _list_in_two_envs], ids=lambda share: share.__name__)
def test_a_mutable_value_reachable_twice_is_not_captured(share: Any):
    """Restored, it would become two values: an in-place change would no longer reach both."""
    env = _vector("CartPole-v1")
    env.reset(seed=0)
    share(env.envs)
    assert capture_vector_env(env) is None


def test_a_layer_with_slots_is_not_captured():
    class Slotted(gym.Wrapper):
        __slots__ = ("hidden",)

    config = EnvConfig(id="CartPole-v1")
    env = SyncVectorEnv([lambda: Slotted(make_env(config))], autoreset_mode=AutoresetMode.NEXT_STEP)
    assert capture_vector_env(env) is None


def test_atari_is_not_captured():
    pytest.importorskip("ale_py")
    env = make_vector_env(EnvConfig(id="ALE/Pong-v5", preprocessing="atari"), 1)
    env.reset(seed=0)
    assert capture_vector_env(env) is None  # the emulator is an ALEInterface


def test_minatar_is_not_captured():
    pytest.importorskip("minatar")
    env = make_vector_env(EnvConfig(id="MinAtar/Breakout-v1"), 1)
    env.reset(seed=0)
    assert capture_vector_env(env) is None  # the game is a MinAtar Environment object


def test_envpool_is_not_captured():
    pytest.importorskip("envpool")
    env = make_vector_env(EnvConfig(id="ALE/Pong-v5", preprocessing="atari", backend="envpool"), 1)
    assert capture_vector_env(env) is None
    with pytest.raises(CheckpointError, match="only a SyncVectorEnv"):
        restore_vector_env(env, {})


def _cartpole_state() -> dict[str, Any]:
    env = _vector("CartPole-v1")
    env.reset(seed=0)
    _step_until_an_episode_ends(env, np.random.default_rng(0))
    state = capture_vector_env(env)
    assert state is not None
    return state


def _drop_attribute(state: dict[str, Any]) -> None:
    del state["envs"][-1][-1]["attributes"]["state"]


def _set_structural(state: dict[str, Any]) -> None:
    state["envs"][-1][0]["attributes"]["env"] = None


def _unknown_bit_generator(state: dict[str, Any]) -> None:
    state["envs"][-1][-1]["attributes"]["_np_random"]["generator"] = "Lehmer64"


def _not_a_value(state: dict[str, Any]) -> None:
    state["envs"][-1][-1]["attributes"]["state"] = {"pickle": "..."}


def _set_method(state: dict[str, Any]) -> None:
    state["envs"][-1][-1]["attributes"]["step"] = 1  # would shadow CartPoleEnv.step


def _set_property(state: dict[str, Any]) -> None:
    state["envs"][-1][-1]["attributes"]["np_random"] = 1  # gym.Env.np_random is a property


def _set_unknown(state: dict[str, Any]) -> None:
    state["envs"][-1][-1]["attributes"]["__class__"] = "CartPoleEnv"


def _huge_rng_integer(state: dict[str, Any]) -> None:
    generator = state["envs"][-1][-1]["attributes"]["_np_random"]
    inner = dict(generator["state"]["dict"])["state"]["dict"]
    inner[0][1] = 2**1000  # PCG64's state: 128 bits at most


@pytest.mark.parametrize(
    ("target", "spoil", "message"),
    [
        ("Acrobot-v1", None, "env state is of TimeLimit<OrderEnforcing<PassiveEnvChecker<CartPoleEnv, this env is"),
        ("CartPole-v1", lambda state: state["envs"].pop(), "holds 2 envs, this vector env has 3"),
        ("CartPole-v1", _drop_attribute, r"lacks attributes \['state'\]"),
        ("CartPole-v1", _set_structural, r"sets structural attributes \['env'\]"),
        ("CartPole-v1", _unknown_bit_generator, "unknown bit generator 'Lehmer64'"),
        ("CartPole-v1", _not_a_value, "no value is stored as"),
        ("CartPole-v1", _set_method, r"sets \['step'\], which are not its data"),
        ("CartPole-v1", _set_property, r"sets \['np_random'\], which are not its data"),
        ("CartPole-v1", _set_unknown, r"sets \['__class__'\], which are not its data"),
        ("CartPole-v1", _huge_rng_integer, "env state is malformed: OverflowError"),
    ],
    ids=[
        "other env",
        "fewer envs",
        "missing attribute",
        "structural attribute",
        "unknown rng",
        "unknown value",
        "a method",
        "a property",
        "a dunder",
        "huge rng integer",
    ],
)
def test_a_state_that_does_not_fit_is_refused_whole(target: str, spoil: Any, message: str):
    state = _cartpole_state()
    if spoil is not None:
        spoil(state)  # only the last sub-env's part is spoiled: the others must not be applied either
    env = _vector(target)
    env.reset(seed=99)
    before = capture_vector_env(env)
    with pytest.raises(CheckpointError, match=message) as error:
        restore_vector_env(env, state)
    assert "\n" not in str(error.value)
    _assert_same(capture_vector_env(env), before)


def test_more_envs_than_captured_is_refused():
    with pytest.raises(CheckpointError, match="holds 3 envs, this vector env has 2"):
        restore_vector_env(_vector("CartPole-v1", num_envs=2), _cartpole_state())
