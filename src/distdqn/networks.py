"""Q-networks built from the env's spaces: an MLP torso with a plain or dueling head."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distdqn.config import NetworkConfig


class QNetwork(nn.Module):
    """Maps a batch of observations to one Q-value per action.

    Observations are flattened and cast to float inside, so replay can hand over its own dtype.
    """

    def __init__(self, obs_size: int, num_actions: int, hidden_sizes: tuple[int, ...], dueling: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = obs_size
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
        features = self.torso(observations.float())
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
    obs_size = int(np.prod(observation_space.shape))
    return QNetwork(obs_size, int(action_space.n), tuple(config.hidden_sizes), config.dueling)
