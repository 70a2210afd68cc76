"""The Q-head split by action rows: learners with K head shards (processes in a gloo group on
loopback) train exactly as the unsplit network does (losses, |TD errors| as priorities, every
weight and Adam moment after the steps), alone or as data-parallel replicas, and a checkpoint
written at one K continues at another.

The learners run in one pool of four spawned processes for the whole module: starting a process
(torch, then the first Learner) costs seconds, the few updates of each test only milliseconds.
Each run joins a fresh group and leaves it; the Learner seeds itself from its config, so a run in
a used process trains as in a fresh one (the one-learner runs in this very process show it)."""

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distdqn.config import resolve_config
from distdqn.roles import Learner
from distdqn.sharded_head import ShardedLinear, join_head_rows, shard_rows
from distdqn.storage.checkpoint import load_checkpoint, save_checkpoint
from distdqn.types import SampleBatch

NUM_ACTIONS = 11  # divides by neither 2 nor 3: the shards differ in size
SPACE = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
ACTIONS = gym.spaces.Discrete(NUM_ACTIONS)


def test_rows_split_into_contiguous_blocks_covering_the_head() -> None:
    assert [shard_rows(11, 3, i) for i in range(3)] == [(0, 4), (4, 8), (8, 11)]
    assert shard_rows(5, 1, 0) == (0, 5)
    with pytest.raises(ValueError, match="cannot split 2 actions"):
        shard_rows(2, 3, 0)


def test_shards_start_from_the_rows_of_the_unsplit_init() -> None:
    """Each shard draws the whole layer's init block by block and keeps its rows, so any K starts
    where K = 1 does, without holding the whole head."""
    torch.manual_seed(0)
    whole = torch.nn.Linear(16, NUM_ACTIONS)
    for shards in (1, 2, 3):
        for index in range(shards):
            torch.manual_seed(0)
            shard = ShardedLinear(16, NUM_ACTIONS, shards, index)
            torch.testing.assert_close(shard.weight, whole.weight[shard.start : shard.stop], rtol=0, atol=0)
            torch.testing.assert_close(shard.bias, whole.bias[shard.start : shard.stop], rtol=0, atol=0)


def _config(learners: int, shards: int, dueling: bool) -> Any:
    return resolve_config(
        "CartPole-v1",
        overrides=[
            "placement.runtime=ray",
            f"placement.num_learners={learners}",
            f"placement.head_shards={shards}",
            "network.hidden_sizes=[16, 16]",
            f"network.dueling={str(dueling).lower()}",
            "algorithm.double_dqn=true",
            "algorithm.max_grad_norm=0.5",  # clipped: the norm is summed over shards
            "algorithm.target_update_interval=2",
            "algorithm.lr=0.01",
        ],
    )


def _batch(seed: int, size: int = 32) -> SampleBatch:
    rng = np.random.default_rng(seed)
    return SampleBatch(
        indices=np.arange(size, dtype=np.int64),
        stamps=np.arange(size, dtype=np.int64),
        shards=np.zeros(size, np.int64),
        observations=rng.uniform(-1, 1, (size, 6)).astype(np.float32),
        actions=rng.integers(NUM_ACTIONS, size=size),
        returns=rng.normal(size=size).astype(np.float32),
        discounts=np.full(size, 0.99, np.float32),
        next_observations=rng.uniform(-1, 1, (size, 6)).astype(np.float32),
        weights=rng.uniform(0.2, 1.0, size).astype(np.float32),
    )


def _train(rank: int, learners: int, shards: int, dueling: bool, updates: range, port: int, out: Path) -> None:
    """Learner `rank` of `learners` (replicas of `shards` head shards): load `out/start.pt` if there
    is one, make `updates` steps (replica r on batches 100 r + u) and save what it returns."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    learner = Learner(_config(learners, shards, dueling), SPACE, ACTIONS, rank=rank)
    try:
        if learners > 1:
            learner.join_group(f"tcp://127.0.0.1:{port}", rank, learners)
        if (out / "start.pt").exists():
            learner.load_state_dict(*torch.load(out / "start.pt"))
        replica = rank // shards
        results = [learner.update(0, [_batch(100 * replica + u)]) for u in updates]
        state, weights = learner.state_dict(), learner.weights()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    priorities = [result.priority_update.priorities for result in results]
    losses = [result.metrics["loss"] for result in results]
    torch.save((priorities, losses, state, weights), out / f"k{shards}-rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Processes:
    """Four spawned processes, one for each learner of a run (four at most), kept between runs.
    A learner that fails ends them all at once (its peers would wait in a collective), and the
    next run starts fresh ones."""

    def __init__(self) -> None:
        self._pool: Any = None

    def run(self, calls: list[tuple]) -> None:
        """`_train(*call)` for every call, each in a process of its own: a process blocks in the
        group's rendezvous until all have joined, so none takes a second call."""
        if self._pool is None:
            self._pool = mp.get_context("spawn").Pool(4)
        results = [self._pool.apply_async(_train, call) for call in calls]
        deadline = time.monotonic() + 300
        try:
            while not all(result.ready() for result in results):
                for result in results:
                    if result.ready() and not result.successful():
                        result.get()  # raises the learner's error
                assert time.monotonic() < deadline, "the learners did not finish"
                time.sleep(0.01)
            for result in results:
                result.get()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


@pytest.fixture(scope="module")
def pool() -> Iterator[_Processes]:
    processes = _Processes()
    yield processes
    processes.close()


def _run(
    pool: _Processes | None, learners: int, shards: int, dueling: bool, out: Path, updates: range = range(3)
) -> list[Any]:
    """Every replica's (priorities, losses, checkpoint state, weights): its first shard's, the
    checkpoint state joined from all its shards' (as the training loop joins them). One learner
    trains in this process, more in the pool's processes."""
    out.mkdir(exist_ok=True)
    args = (learners, shards, dueling, updates, _free_port(), out)
    if learners == 1:
        _train(0, *args)
    else:
        assert pool is not None
        pool.run([(rank, *args) for rank in range(learners)])
    saved = [torch.load(out / f"k{shards}-rank{rank}.pt", weights_only=False) for rank in range(learners)]
    replicas = [saved[first : first + shards] for first in range(0, learners, shards)]
    return [(*replica[0][:2], join_head_rows([part[2] for part in replica]), replica[0][3]) for replica in replicas]


def _assert_same_training(split: Any, whole: Any) -> None:
    (split_priorities, split_losses, split_state, split_weights) = split
    (priorities, losses, state, weights) = whole
    np.testing.assert_allclose(np.concatenate(split_priorities), np.concatenate(priorities), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split_losses, losses, rtol=1e-5)
    tensors, split_tensors = state[0], split_state[0]
    assert split_tensors.keys() == tensors.keys()  # networks and Adam moments, the head whole
    for name, value in tensors.items():
        torch.testing.assert_close(split_tensors[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert split_state[1] == state[1]
    assert split_weights.version == weights.version
    for name, value in weights.tensors.items():
        np.testing.assert_allclose(split_weights.tensors[name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dueling", [False, True])
def test_two_head_shards_train_as_the_unsplit_network(pool: _Processes, tmp_path: Path, dueling: bool) -> None:
    """Three Double-DQN steps (a target update among them) with clipped gradients at K = 2 and
    at K = 1: same priorities, losses, weights, target and Adam moments, gathered whole."""
    [split] = _run(pool, 2, 2, dueling, tmp_path)
    [whole] = _run(pool, 1, 1, dueling, tmp_path)
    _assert_same_training(split, whole)


def test_two_replicas_of_two_head_shards_train_as_two_unsplit_replicas(pool: _Processes, tmp_path: Path) -> None:
    """Four learners, K = 2 by 2 data-parallel replicas on different batches, against two
    unsplit data-parallel learners: the gradient average runs over the learners with the same rows."""
    split = _run(pool, 4, 2, True, tmp_path)
    whole = _run(pool, 2, 1, True, tmp_path)
    for split_replica, whole_replica in zip(split, whole, strict=True):
        _assert_same_training(split_replica, whole_replica)


def test_a_checkpoint_written_at_one_k_continues_at_another(pool: _Processes, tmp_path: Path) -> None:
    """Two steps at K = 2 are saved whole and continued at K = 1 and at K = 3 (each learner takes
    its rows of the head and of its Adam moments); both end as four steps at K = 1 do."""
    [after_two] = _run(pool, 2, 2, True, tmp_path / "k2", range(2))
    [straight] = _run(pool, 1, 1, True, tmp_path / "straight", range(4))
    for shards in (1, 3):
        directory = tmp_path / f"continued-at-{shards}"
        directory.mkdir()
        torch.save(after_two[2], directory / "start.pt")
        [continued] = _run(pool, shards, shards, True, directory, range(2, 4))
        np.testing.assert_allclose(np.concatenate(continued[0]), np.concatenate(straight[0][2:]), rtol=1e-5, atol=1e-6)
        for name, value in straight[2][0].items():
            torch.testing.assert_close(continued[2][0][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_a_head_shard_restores_from_a_checkpoint_by_reading_only_its_rows(tmp_path: Path) -> None:
    """A restarted or resumed learner of a split head reads its rows of the checkpoint file (not
    the whole head, which may not fit it) and holds exactly those rows, moments included."""
    [whole] = _run(None, 1, 1, True, tmp_path / "whole")  # in this process
    tensors, learner_state = whole[2]
    config = _config(3, 3, True)
    save_checkpoint(tmp_path / "checkpoints", "latest", config, tensors, {"learner": learner_state})
    latest = str(tmp_path / "checkpoints" / "latest")
    for rank in range(3):
        learner = Learner(config, SPACE, ACTIONS, latest, rank=rank)
        start, stop = shard_rows(NUM_ACTIONS, 3, rank)
        read = load_checkpoint(Path(latest), learner._rows_of)
        assert read.tensors["online.advantage.weight"].shape == (stop - start, 16)
        assert read.tensors["online.torso.1.weight"].shape == tensors["online.torso.1.weight"].shape
        mine, state = learner.state_dict()
        assert learner.updates == learner_state["updates"] and state["head_rows"]
        for name, value in mine.items():
            expected = tensors[name][start:stop] if name in state["head_rows"] else tensors[name]
            torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
