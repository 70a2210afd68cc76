import gymnasium as gym
import numpy as np
import pytest
import torch

from distdqn.config import NetworkConfig
from distdqn.networks import build_q_network, load_weights

OBS = gym.spaces.Box(-1, 1, (3, 2), np.float32)
ACTIONS = gym.spaces.Discrete(5)


def test_mlp_maps_observations_to_one_value_per_action():
    network = build_q_network(NetworkConfig(hidden_sizes=(16, 8)), OBS, ACTIONS)
    assert network(torch.zeros(7, 3, 2)).shape == (7, 5)
    widths = [m.out_features for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 8, 5]


def test_dueling_head_is_value_plus_mean_free_advantage():
    network = build_q_network(NetworkConfig(hidden_sizes=(16,), dueling=True), OBS, ACTIONS)
    observations = torch.randn(4, 3, 2)
    q = network(observations)
    features = network.torso(observations)
    value = network.value(features)
    assert torch.allclose(q.mean(dim=1, keepdim=True), value, atol=1e-6)


def test_integer_observations_are_cast():
    network = build_q_network(NetworkConfig(hidden_sizes=(4,)), gym.spaces.Box(0, 255, (2,), np.uint8), ACTIONS)
    assert network(torch.tensor([[3, 4]], dtype=torch.uint8)).dtype == torch.float32


def test_non_discrete_actions_are_refused():
    with pytest.raises(TypeError, match="Discrete"):
        build_q_network(NetworkConfig(), OBS, gym.spaces.Box(-1, 1, (1,)))


def test_load_weights_copies_by_name_and_checks_shapes():
    source = build_q_network(NetworkConfig(hidden_sizes=(8,)), OBS, ACTIONS)
    target = build_q_network(NetworkConfig(hidden_sizes=(8,)), OBS, ACTIONS)
    arrays = {k: v.detach().numpy().copy() for k, v in reversed(list(source.state_dict().items()))}
    load_weights(target, arrays)
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError):
        load_weights(build_q_network(NetworkConfig(hidden_sizes=(9,)), OBS, ACTIONS), arrays)


def test_image_torsos_read_channels_first_or_last_and_keep_their_weight_names():
    atari = build_q_network(NetworkConfig(), gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), ACTIONS)
    assert {"torso.0.0.weight", "torso.2.weight", "head.weight"} <= set(atari.state_dict())
    minatar = build_q_network(NetworkConfig(torso="minatar_cnn"), gym.spaces.Box(0, 1, (10, 10, 4), bool), ACTIONS)
    assert {"torso.0.1.weight", "torso.2.weight"} <= set(minatar.state_dict())
    rgb = build_q_network(NetworkConfig(), gym.spaces.Box(0, 255, (2, 40, 40, 3), np.uint8), ACTIONS)
    assert rgb.torso[0][1].in_channels == 6 and rgb(torch.zeros(1, 2, 40, 40, 3, dtype=torch.uint8)).shape == (1, 5)
    small = build_q_network(NetworkConfig(), gym.spaces.Box(0, 255, (4, 3, 2), np.uint8), ACTIONS)
    assert small(torch.zeros(1, 4, 3, 2, dtype=torch.uint8)).shape == (1, 5)  # too small for the CNN: an MLP
