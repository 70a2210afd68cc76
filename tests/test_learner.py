"""The learner's update paths: a group of batches, compiled, and in bfloat16."""

import socket
from datetime import timedelta
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from distdqn.config import resolve_config
from distdqn.roles import Learner
from distdqn.roles.learner_group import listening_store
from distdqn.types import SampleBatch

SPACE = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTIONS = gym.spaces.Discrete(2)


def _learner(*overrides: str) -> Learner:
    config = resolve_config("CartPole-v1", overrides=["algorithm.target_update_interval=2", *overrides])
    return Learner(config, SPACE, ACTIONS)


def _batch(seed: int, size: int = 32) -> SampleBatch:
    rng = np.random.default_rng(seed)
    return SampleBatch(
        indices=np.arange(size, dtype=np.int64) + 100 * seed,
        stamps=np.arange(size, dtype=np.int64),
        shards=np.zeros(size, np.int64),
        observations=rng.uniform(-1, 1, (size, 4)).astype(np.float32),
        actions=rng.integers(2, size=size),
        returns=rng.normal(size=size).astype(np.float32),
        discounts=np.full(size, 0.99, np.float32),
        next_observations=rng.uniform(-1, 1, (size, 4)).astype(np.float32),
        weights=rng.uniform(0.2, 1.0, size).astype(np.float32),
    )


def _state(learner: Learner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.state_dict()[0].items()}


def test_a_group_of_batches_is_the_same_as_one_update_per_batch():
    batches = [_batch(seed) for seed in range(5)]
    grouped, one_by_one = _learner(), _learner()
    result = grouped.update(0, batches)
    parts = [one_by_one.update(0, [batch]) for batch in batches]
    assert grouped.updates == one_by_one.updates == 5
    assert np.array_equal(
        result.priority_update.priorities, np.concatenate([p.priority_update.priorities for p in parts])
    )
    assert np.array_equal(result.priority_update.indices, np.concatenate([b.indices for b in batches]))
    assert result.metrics == parts[-1].metrics
    assert all(torch.equal(a, b) for a, b in zip(_state(grouped).values(), _state(one_by_one).values(), strict=True))


def test_rows_from_several_shards_make_one_batch_with_weights_over_its_max():
    """update(*per_shard): batch b is every shard's rows b together; weights / the batch's max."""
    whole = [_batch(seed)._replace(weights=np.linspace(1.0, 4.0, 32)) for seed in range(3)]
    split = [
        [batch._replace(**{f: getattr(batch, f)[rows] for f in SampleBatch._fields}) for batch in whole]
        for rows in (slice(0, 20), slice(20, 32))
    ]
    split[1] = [batch._replace(shards=np.ones(12, np.int64)) for batch in split[1]]
    from_shards, from_one = _learner(), _learner()
    result = from_shards.update(0, *split)
    expected = from_one.update(0, [batch._replace(weights=batch.weights / 4.0) for batch in whole])
    assert np.array_equal(result.priority_update.priorities, expected.priority_update.priorities)
    assert np.array_equal(result.priority_update.shards, np.tile(np.repeat([0, 1], [20, 12]), 3))
    assert all(torch.equal(a, b) for a, b in zip(_state(from_shards).values(), _state(from_one).values(), strict=True))


def test_learning_rate_follows_the_env_steps_of_each_update():
    """lr 2e-3 -> 2e-4 over 10k env steps. Adam's first step moves every weight by lr * g / |g|,
    so the largest weight change is the learning rate the step used."""
    overrides = ["algorithm.lr=2e-3", "algorithm.lr_end=2e-4", "algorithm.lr_decay_steps=10000"]
    for env_steps, lr in [(0, 2e-3), (5_000, 1.1e-3), (10_000, 2e-4), (40_000, 2e-4)]:
        learner = _learner(*overrides)
        before = _state(learner)
        result = learner.update(env_steps, [_batch(0)])
        assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(lr)
        assert result.metrics["lr"] == pytest.approx(lr)
        moved = max(
            (_state(learner)[name] - value).abs().max().item()
            for name, value in before.items()
            if name.startswith("online.")
        )
        assert moved == pytest.approx(lr, rel=1e-3)


def test_learning_rate_is_constant_without_lr_end():
    learner = _learner("algorithm.lr=2e-3", "algorithm.lr_end=null")
    assert learner.update(0, [_batch(0)]).metrics["lr"] == learner.update(10**6, [_batch(1)]).metrics["lr"] == 2e-3


def test_bfloat16_learner_tracks_the_float32_one():
    batches = [_batch(seed) for seed in range(3)]
    full, mixed = _learner().update(0, batches), _learner("placement.learner_mixed_precision=true").update(0, batches)
    assert mixed.priority_update.priorities.dtype == np.float64
    assert not np.array_equal(mixed.priority_update.priorities, full.priority_update.priorities)  # bf16 really ran
    np.testing.assert_allclose(mixed.priority_update.priorities, full.priority_update.priorities, rtol=0.05, atol=0.02)
    assert mixed.metrics["loss"] == pytest.approx(full.metrics["loss"], rel=0.05)


def test_compiled_learner_matches_eager():
    batches = [_batch(seed) for seed in range(4)]
    eager, compiled = _learner(), _learner("placement.learner_compile=true")
    first, second = eager.update(0, batches), compiled.update(0, batches)
    np.testing.assert_allclose(
        second.priority_update.priorities, first.priority_update.priorities, rtol=1e-5, atol=1e-6
    )
    for name, value in _state(eager).items():
        torch.testing.assert_close(_state(compiled)[name], value, rtol=1e-5, atol=1e-6)
    assert compiled.updates == 4 and compiled.online.training  # the module itself is not replaced


def test_compiled_cnn_learner_after_an_mlp_one_in_the_same_process():
    """A second network shape in one process recompiles with static shapes (dynamic conv shapes
    crash inductor); the compiled CNN learner matches eager."""
    _learner("placement.learner_compile=true").update(0, [_batch(0)])
    space, actions = gym.spaces.Box(0, 1, (10, 10, 4), bool), gym.spaces.Discrete(3)
    rng = np.random.default_rng(0)
    frames, next_frames = rng.random((2, 32, 10, 10, 4)) < 0.2
    batch = SampleBatch(
        np.arange(32),
        np.arange(32),
        np.zeros(32, np.int64),
        frames,
        rng.integers(3, size=32),
        rng.normal(size=32).astype(np.float32),
        np.full(32, 0.99, np.float32),
        next_frames,
        np.ones(32, np.float32),
    )
    results = [
        Learner(resolve_config("MinAtar/Breakout-v1", overrides=overrides), space, actions).update(0, [batch])
        for overrides in ([], ["placement.learner_compile=true"])
    ]
    np.testing.assert_allclose(
        results[1].priority_update.priorities, results[0].priority_update.priorities, rtol=1e-4, atol=1e-5
    )


def _another_local_address() -> str | None:
    """An address of this machine other than 127.0.0.1 (the one its default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent, only a route looked up
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address == "127.0.0.1" else address


def _listening_on(port: int) -> set[str]:
    """IPv4 addresses a TCP socket of this machine listens on at `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_the_learners_tcp_store_listens_on_the_address_it_is_given_only():
    """Learners on several nodes meet at learner 0's store; torch alone binds it to every
    interface, unauthenticated. Bound to 127.0.0.1, it answers there and nowhere else."""
    store = listening_store("127.0.0.1", 2)
    client = torch.distributed.TCPStore("127.0.0.1", store.port, 2, False, timedelta(seconds=10))
    client.set("met", "yes")
    assert store.get("met") == b"yes"
    assert _listening_on(store.port) == {"127.0.0.1"}
    other = _another_local_address()
    if other is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, store.port), timeout=5).close()
