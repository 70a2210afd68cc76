"""The Q-head split by action rows: one Double-DQN update with K = 2 head shards (two processes in
a gloo group on loopback) equals the unsplit network's update: loss, |TD errors| (priorities),
the torso after the step and every head row after the step."""

import os
import socket
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distdqn.config import NetworkConfig
from distdqn.losses import dqn_loss, td_target
from distdqn.networks import build_q_network
from distdqn.sharded_head import ShardedLinear, shard_rows

NUM_ACTIONS = 11  # does not divide by 2: the shards differ in size
OBS = 6
BATCH = 32


def test_rows_split_into_contiguous_blocks_covering_the_head() -> None:
    assert [shard_rows(11, 3, i) for i in range(3)] == [(0, 4), (4, 8), (8, 11)]
    assert shard_rows(5, 1, 0) == (0, 5)
    with pytest.raises(ValueError, match="cannot split 2 actions"):
        shard_rows(2, 3, 0)


def _networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, (OBS,), np.float32)
    online = build_q_network(NetworkConfig(hidden_sizes=(16, 16)), space, gym.spaces.Discrete(NUM_ACTIONS))
    target = build_q_network(NetworkConfig(hidden_sizes=(16, 16)), space, gym.spaces.Discrete(NUM_ACTIONS))
    return online, target


def _batch() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    observations = torch.randn(BATCH, OBS, generator=generator)
    actions = torch.randint(0, NUM_ACTIONS, (BATCH,), generator=generator)
    returns = torch.randn(BATCH, generator=generator)
    discounts = torch.rand(BATCH, generator=generator) * 0.99
    next_observations = torch.randn(BATCH, OBS, generator=generator)
    weights = torch.rand(BATCH, generator=generator) + 0.5
    return observations, actions, returns, discounts, next_observations, weights


def _unsplit_update() -> dict[str, torch.Tensor]:
    online, target = _networks()
    observations, actions, returns, discounts, next_observations, weights = _batch()
    q_taken = online(observations).gather(1, actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        y = td_target(returns, discounts, target(next_observations), online(next_observations))
    loss, td = dqn_loss(q_taken, y, weights)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-2)
    loss.backward()
    optimizer.step()
    moments = {"exp_avg": optimizer.state[online.head.weight]["exp_avg"].clone()}
    return {
        "loss": loss.detach(),
        "td": td,
        **moments,
        **{k: v.detach().clone() for k, v in online.state_dict().items()},
    }


def _sharded_update(rank: int, world: int, port: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        online, target = _networks()
        heads = []
        for network in (online, target):
            head = ShardedLinear(network.head.in_features, NUM_ACTIONS, world, rank)
            head.load_rows(network.head.weight, network.head.bias)
            heads.append(head)
        online_head, target_head = heads
        observations, actions, returns, discounts, next_observations, weights = _batch()
        q_taken = online_head.taken(online_head(online.torso(observations)), actions)
        with torch.no_grad():
            _, best = online_head.best(online_head(online.torso(next_observations)))
            bootstrap = target_head.taken(target_head(target.torso(next_observations)), best)
        loss, td = dqn_loss(q_taken, returns + discounts * bootstrap, weights)
        parameters = [*online.torso.parameters(), *online_head.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=1e-2)
        loss.backward()
        optimizer.step()
        result = {"loss": loss.detach(), "td": td, "start": online_head.start, "stop": online_head.stop}
        result |= {f"torso.{k}": v.detach().clone() for k, v in online.torso.state_dict().items()}
        result |= {"head.weight": online_head.weight.detach().clone(), "head.bias": online_head.bias.detach().clone()}
        moments = optimizer.state[online_head.weight]
        result |= {  # what a checkpoint holds: the whole head and its Adam moments, gathered
            "whole.weight": online_head.gather(online_head.weight),
            "whole.bias": online_head.gather(online_head.bias),
            "whole.exp_avg": online_head.gather(moments["exp_avg"]),
        }
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_one_update_with_two_head_shards_equals_the_unsplit_update(tmp_path: Path) -> None:
    mp.spawn(_sharded_update, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    expected = _unsplit_update()
    shards = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert [(shard["start"], shard["stop"]) for shard in shards] == [(0, 6), (6, 11)]
    for shard in shards:
        torch.testing.assert_close(shard["loss"], expected["loss"])
        torch.testing.assert_close(shard["td"], expected["td"])  # the priorities
        for name, value in expected.items():
            if name.startswith("torso."):
                torch.testing.assert_close(shard[name], value)  # every replica of the torso, after the step
    torch.testing.assert_close(torch.cat([s["head.weight"] for s in shards]), expected["head.weight"])
    torch.testing.assert_close(torch.cat([s["head.bias"] for s in shards]), expected["head.bias"])
    for shard in shards:  # gathered on every process, in action order
        torch.testing.assert_close(shard["whole.weight"], expected["head.weight"])
        torch.testing.assert_close(shard["whole.bias"], expected["head.bias"])
        torch.testing.assert_close(shard["whole.exp_avg"], expected["exp_avg"])


def test_a_head_gathered_from_two_shards_reshards_to_one_and_to_three() -> None:
    """Resharding is slicing the whole head: K = 2's gathered rows loaded at K = 1 give the unsplit
    layer, and at K = 3 each shard its own block."""
    online, _ = _networks()
    halves = [online.head.weight[start:stop] for start, stop in (shard_rows(NUM_ACTIONS, 2, i) for i in range(2))]
    whole = torch.cat(halves)
    single = ShardedLinear(online.head.in_features, NUM_ACTIONS, 1, 0)
    single.load_rows(whole, online.head.bias)
    torch.testing.assert_close(single.weight, online.head.weight)
    for index in range(3):
        third = ShardedLinear(online.head.in_features, NUM_ACTIONS, 3, index)
        third.load_rows(whole, online.head.bias)
        start, stop = shard_rows(NUM_ACTIONS, 3, index)
        torch.testing.assert_close(third.weight, online.head.weight[start:stop])
