"""Q-networks built from the env's spaces: an MLP torso with a plain or dueling head."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distdqn.config import NetworkConfig


def nature_cnn(channels: int) -> nn.Sequential:
    """The convolutions of Mnih et al. 2015 for 84x84 inputs."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
    )


def minatar_cnn(channels: int) -> nn.Sequential:
    """MinAtar's network (Young and Tian 2019): one 16-filter 3x3 convolution on 10x10 inputs,
    which arrive channels last."""
    return nn.Sequential(ChannelsFirst(), nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU())


class ChannelsFirst(nn.Module):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.permute(0, 3, 1, 2)


class QNetwork(nn.Module):
    """Maps a batch of observations to one Q-value per action.

    Observations are cast to float inside (uint8 frames are scaled to [0, 1]), so replay can
    hand over its own compact dtype.
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, hidden_sizes: tuple[int, ...],
                 dueling: bool, convolutions: nn.Module | None = None, input_scale: float = 1.0) -> None:
        super().__init__()
        self.input_scale = input_scale
        layers: list[nn.Module] = []
        if convolutions is not None:
            layers.append(convolutions)
            with torch.no_grad():
                width = int(np.prod(layers[0](torch.zeros(1, *obs_shape)).shape))
        else:
            width = int(np.prod(obs_shape))
        layers.append(nn.Flatten())
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.torso = nn.Sequential(*layers)
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(width, 1)
            self.advantage = nn.Linear(width, num_actions)
        else:
            self.head = nn.Linear(width, num_actions)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        inputs = observations.float()
        if self.input_scale != 1.0:
            inputs = inputs * self.input_scale
        features = self.torso(inputs)
        if not self.dueling:
            return self.head(features)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


def load_weights(network: nn.Module, tensors: dict[str, np.ndarray]) -> None:
    """Copy published NumPy weights into a network in one batched op (no state_dict machinery,
    which costs more than the copy for small networks refreshed every few steps)."""
    targets = network.state_dict(keep_vars=True)
    if targets.keys() != tensors.keys():
        raise ValueError(f"weights for {sorted(tensors)} do not fit a network with {sorted(targets)}")
    sources = [torch.tensor(tensors[name]) for name in targets]  # copies: published arrays may be read-only
    if any(s.shape != t.shape for s, t in zip(sources, targets.values())):
        raise ValueError("weight shapes do not fit the network (was it trained with another network config?)")
    with torch.no_grad():
        torch._foreach_copy_(list(targets.values()), sources)


def build_q_network(config: NetworkConfig, observation_space: gym.Space, action_space: gym.Space) -> QNetwork:
    """A Q-network sized for the spaces (the action space must be Discrete)."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"DQN needs a Discrete action space, got {action_space}")
    shape = tuple(observation_space.shape)
    torso = config.torso
    if torso == "auto":
        torso = "nature_cnn" if len(shape) == 3 else "mlp"
    if torso != "mlp" and len(shape) != 3:
        raise ValueError(f"network.torso = {torso!r} needs 3-dimensional observations, got {shape}")
    convolutions = {"mlp": lambda: None, "nature_cnn": lambda: nature_cnn(shape[0]),
                    "minatar_cnn": lambda: minatar_cnn(shape[-1])}[torso]()
    scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
    return QNetwork(shape, int(action_space.n), tuple(config.hidden_sizes), config.dueling, convolutions, scale)
