"""Q-networks built from the env's spaces: an MLP torso, after convolutions for images or one encoder
per part of an encoded observation, with a plain or dueling head."""

from __future__ import annotations

from typing import NamedTuple, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distdqn.config import NetworkConfig
from distdqn.envs import num_actions
from distdqn.envs.item_space import ItemSpace
from distdqn.envs.observations import EncodedBox, ObservationLayout, Part
from distdqn.errors import ConfigError
from distdqn.memory import gib, require_memory

NATURE_CNN_MIN_SIDE = 36
"""The smallest image side the Nature CNN's three convolutions fit (8 stride 4, 4 stride 2, 3)."""
MINATAR_CNN_MIN_SIDE = 3
"""The smallest image side MinAtar's one 3x3 convolution fits."""


def nature_cnn(channels: int) -> nn.Sequential:
    """The convolutions of Mnih et al. 2015, for 84x84 inputs; any side of at least 36 pixels fits."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1),
        nn.ReLU(),
    )


def minatar_cnn(channels: int) -> nn.Sequential:
    """MinAtar's network (Young and Tian 2019): one 16-filter 3x3 convolution on 10x10 inputs
    (which arrive channels last: see `image_convolutions`)."""
    return nn.Sequential(nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU())


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether images of `shape` (one frame, or frames stacked on leading axes) hold their channels
    last, as gymnasium's HxWxC frames do (1 to 4 channels after two longer sides), rather than first
    (CxHxW, as Atari's preprocessed stacks)."""
    return len(shape) >= 3 and shape[-1] <= 4 < min(shape[-3], shape[-2])


class ChannelsFirst(nn.Module):
    """[B, *stack, H, W, C] (or [B, *stack, C, H, W] with `channels_last` False) -> [B, channels, H, W]:
    frames stacked on leading axes become channels, so a stack of 4 RGB frames is 12 channels.

    The result is made contiguous: oneDNN convolves a few channels faster from dense NCHW than from
    a channels-last view (a MinAtar learner step takes 13% less time; benchmarks/RESULTS.md)."""

    def __init__(self, channels_last: bool = True) -> None:
        super().__init__()
        self.channels_last = channels_last

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            inputs = inputs.movedim(-1, -3)
        return inputs.flatten(1, -3).contiguous()


def image_convolutions(torso: str, shape: tuple[int, ...]) -> nn.Sequential:
    """`torso`'s convolutions for images of `shape`: channels first or last, stacked or not.
    MinAtar's frames always come channels last; a single channels-first image goes in as it is.
    Observations that are no images, or images too small for the convolutions, are refused in one
    `ConfigError` line naming the torso and the shape it needs."""
    min_side = {"nature_cnn": NATURE_CNN_MIN_SIDE, "minatar_cnn": MINATAR_CNN_MIN_SIDE}[torso]
    layout = "height x width x channels" if torso == "minatar_cnn" else "channels x height x width or H x W x C"
    if len(shape) < 3:
        raise ConfigError(
            f"network.torso = {torso!r} needs image observations ({layout}, sides of at least {min_side}); "
            f"this env's observations have shape {shape}: use network.torso = 'mlp' (or 'auto')"
        )
    last = torso == "minatar_cnn" or channels_last(shape)
    sides = shape[-3:-1] if last else shape[-2:]
    if min(sides) < min_side:
        raise ConfigError(
            f"network.torso = {torso!r} needs images of at least {min_side}x{min_side} pixels ({layout}); "
            f"this env's observations have shape {shape}, images of {sides[0]}x{sides[1]}"
        )
    channels = int(np.prod(shape[:-3])) * shape[-1] if last else int(np.prod(shape[:-2]))
    convolutions = {"nature_cnn": nature_cnn, "minatar_cnn": minatar_cnn}[torso](channels)
    if not last and len(shape) == 3:
        return convolutions
    return nn.Sequential(ChannelsFirst(last), *convolutions)


def auto_torso(shape: tuple[int, ...]) -> str:
    """`network.torso = "auto"`: the Nature CNN for images it fits, an MLP for anything else."""
    if len(shape) < 3:
        return "mlp"
    sides = shape[-3:-1] if channels_last(shape) else shape[-2:]
    return "nature_cnn" if min(sides) >= NATURE_CNN_MIN_SIDE else "mlp"


class OneHot(nn.Module):
    """[..., k] category indices (as floats) -> [..., sum(categories)]: each value one-hot over its own count."""

    offsets: torch.Tensor

    def __init__(self, categories: tuple[int, ...]) -> None:
        super().__init__()
        self.total = sum(categories)
        self.register_buffer("offsets", torch.tensor(np.cumsum((0, *categories[:-1]))), persistent=False)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(indices.long() + self.offsets, self.total).sum(-2).float()


class PartsEncoder(nn.Module):
    """Reads encoded observations ([B, *stack, size], see `distdqn.envs.observations`) part by part:
    discrete parts one-hot, Box parts as values or, when they are images and the torso is a CNN,
    through their own convolutions; the features of all parts are concatenated."""

    def __init__(self, layout: ObservationLayout, stack: tuple[int, ...], torso: str) -> None:
        super().__init__()
        self.stack = stack
        self.parts = layout.parts
        self.bounds = np.cumsum((0, *(part.size for part in layout.parts))).tolist()
        if torso not in ("auto", "mlp") and not any(self._image(part) for part in layout.parts):
            raise ConfigError(
                f"network.torso = {torso!r} needs an image part (a 3-dimensional Box) in the observation; "
                f"this env's has parts of shapes {[part.shape for part in layout.parts]}"
            )
        self.encoders = nn.ModuleList(self._encoder(part, torso) for part in layout.parts)

    @staticmethod
    def _image(part: Part) -> bool:
        return not part.categories and len(part.shape) == 3

    def _encoder(self, part: Part, torso: str) -> nn.Module:
        if part.categories:
            return OneHot(part.categories)
        shape = (*self.stack, *part.shape)
        torso = auto_torso(shape) if torso == "auto" else torso
        return image_convolutions(torso, shape) if self._image(part) and torso != "mlp" else nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[: 1 + len(self.stack)]
        features = []
        for part, start, stop, encoder in zip(
            self.parts, self.bounds[:-1], self.bounds[1:], self.encoders, strict=True
        ):
            values = inputs[..., start:stop].reshape(*batch, *part.shape)
            features.append(encoder(values * part.scale if part.scale != 1.0 else values).flatten(1))
        return torch.cat(features, dim=1)


def feature_width(obs_shape: tuple[int, ...], features: nn.Module | None) -> int:
    """The number of features `features` (None: the flattened observation) makes of one observation."""
    if features is None:
        return int(np.prod(obs_shape))
    with torch.no_grad():
        return int(np.prod(features(torch.zeros(1, *obs_shape)).shape))


def check_weights_fit(width: int, hidden_sizes: tuple[int, ...], head_outputs: int) -> None:
    """Refuse, before any layer is allocated, float32 weights of an MLP torso on `width` features
    and a head of `head_outputs` larger than this machine's memory (a Recommend-v0 catalog of 10**8
    items asked torch for a 95 GiB head and ended in its allocation traceback). A learner holds its
    weights about five times over (see docs/reference/memory.md): this is the floor, for any process."""
    sizes = [width, *hidden_sizes]
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    if head_outputs:
        layers.append((sizes[-1], head_outputs))
    parameters = sum((inputs + 1) * outputs for inputs, outputs in layers)
    needed = 4 * parameters
    require_memory(
        needed,
        f"a Q-network of {parameters:,} parameters ({width:,} input features, network.hidden_sizes="
        f"{list(hidden_sizes)}, {head_outputs:,} head outputs) needs {gib(needed)} for its float32 weights alone",
        ConfigError,
    )


class QTorso(nn.Module):
    """Observations -> features: the part of a Q-network every head shares (and every learner of
    a split head replicates).

    Observations are cast to float inside (uint8 frames are scaled to [0, 1]), so replay can
    hand over its own compact dtype. `features` (convolutions, or a `PartsEncoder`) comes first
    in the torso when given; `width` is the size of the features.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_sizes: tuple[int, ...],
        features: nn.Module | None = None,
        input_scale: float = 1.0,
        head_outputs: int = 0,
    ) -> None:
        """`head_outputs`: the outputs of the head a subclass puts on the features, counted with
        the torso's layers when the weights are checked against this machine's memory."""
        super().__init__()
        self.input_scale = input_scale
        layers: list[nn.Module] = []
        if features is not None:
            layers.append(features)
        width = feature_width(obs_shape, features)
        check_weights_fit(width, hidden_sizes, head_outputs)
        layers.append(nn.Flatten())
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.torso = nn.Sequential(*layers)
        self.width = width

    def features(self, observations: torch.Tensor) -> torch.Tensor:
        inputs = observations.float()
        if self.input_scale != 1.0:
            inputs = inputs * self.input_scale
        return self.torso(inputs)


class QNetwork(QTorso):
    """Maps a batch of observations to one Q-value per action, with a plain or dueling head."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        hidden_sizes: tuple[int, ...],
        dueling: bool,
        features: nn.Module | None = None,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__(obs_shape, hidden_sizes, features, input_scale, num_actions + int(dueling))
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(self.width, 1)
            self.advantage = nn.Linear(self.width, num_actions)
        else:
            self.head = nn.Linear(self.width, num_actions)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        features = self.features(observations)
        if not self.dueling:
            return self.head(features)
        return dueling_q(self.value(features), self.advantage(features))


def dueling_q(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Q = V(s) + A(s, a) - mean over a of A(s, a) (Wang et al. 2016): the mean keeps V and A identifiable."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


ITEM_TOWER_WIDTH = 64
"""Hidden units of the small MLP that embeds one action's features (`ActionFeatureQNetwork`)."""


class ActionFeatureQNetwork(QTorso):
    """Q(s, a) = e(s) . g(x_a): a state embedding against an embedding of action a's features x_a
    (the "two towers" of retrieval models), for an action space that publishes them (`ItemSpace`).

    The head has no parameters per action: an item seen once is scored by what the network learned
    of items like it (Recommend-v0's preset scored 219 with 10^4 items and 225 with 10^3, where one
    output per item scored 152 and 175: benchmarks/RESULTS.md). The features are a
    buffer outside the state dict, like the action space they come from, so checkpoints and published
    weights do not carry the catalog. With `dueling`, g's scores are the advantages of a state value."""

    def __init__(
        self,
        spec: TorsoSpec,
        action_features: np.ndarray,
        embedding_size: int,
        dueling: bool,
    ) -> None:
        head_outputs = embedding_size + int(dueling)
        super().__init__(spec.obs_shape, spec.hidden_sizes, spec.features, spec.input_scale, head_outputs)
        self.dueling = dueling
        self.register_buffer("action_features", torch.as_tensor(np.array(action_features)), persistent=False)
        self.state_embedding = nn.Linear(self.width, embedding_size)
        self.action_embedding = nn.Sequential(
            nn.Linear(action_features.shape[1], ITEM_TOWER_WIDTH),
            nn.ReLU(),
            nn.Linear(ITEM_TOWER_WIDTH, embedding_size),
        )
        if dueling:
            self.value = nn.Linear(self.width, 1)
        self._kept_items: tuple[tuple[tuple[int, int], ...], torch.Tensor] | None = None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        features = self.features(observations)
        states, items = self.state_embedding(features), self._items()
        if not self.dueling:
            return states @ items.T
        return torch.addmm(self.value(features), states, items.T)

    def _items(self) -> torch.Tensor:
        """The N item embeddings as the head multiplies them. A frozen copy (an actor's, the
        evaluator's, the target) keeps them until its tower's weights are written, which every
        in-place write marks by bumping the tensors' versions; embedding 10^4 items costs more
        than the rest of an acting step. A trained copy embeds at every forward: the fused
        optimizer's step writes the weights without bumping their versions."""
        features = cast(torch.Tensor, self.action_features)
        tower = [*self.action_embedding.parameters(), features]
        if any(tensor.requires_grad for tensor in tower):
            return self._embed_items()
        key = tuple((tensor.data_ptr(), tensor._version) for tensor in tower)
        if self._kept_items is None or self._kept_items[0] != key:
            with torch.autocast(features.device.type, enabled=False):
                self._kept_items = key, self._embed_items()
        return self._kept_items[1]

    def _embed_items(self) -> torch.Tensor:
        items = self.action_embedding(self.action_features)
        # the advantages' mean over actions is e(s) . mean(g): centring the N item embeddings
        # makes the whole dueling head one product, with no pass over the B x N scores
        return items - items.mean(dim=0, keepdim=True) if self.dueling else items


def load_weights(network: nn.Module, tensors: dict[str, np.ndarray]) -> None:
    """Copy published NumPy weights into a network in one batched op (no state_dict machinery,
    which costs more than the copy for small networks refreshed every few steps)."""
    targets = network.state_dict(keep_vars=True)
    if targets.keys() != tensors.keys():
        raise ValueError(f"weights for {sorted(tensors)} do not fit a network with {sorted(targets)}")
    sources = [torch.tensor(tensors[name]) for name in targets]  # copies: published arrays may be read-only
    if any(s.shape != t.shape for s, t in zip(sources, targets.values(), strict=True)):
        raise ValueError("weight shapes do not fit the network (was it trained with another network config?)")
    with torch.no_grad():
        torch._foreach_copy_(list(targets.values()), sources)


class TorsoSpec(NamedTuple):
    """What a `QTorso` for an observation space is built from."""

    obs_shape: tuple[int, ...]
    hidden_sizes: tuple[int, ...]
    features: nn.Module | None
    input_scale: float


def torso_spec(config: NetworkConfig, observation_space: gym.Space) -> TorsoSpec:
    """The torso for `observation_space`: an `EncodedBox` is read by its layout, any other Box as
    one array: images through the torso's CNN, the rest flattened."""
    if observation_space.shape is None:
        raise TypeError(f"a Q-network needs an observation space with a shape, got {observation_space}")
    shape = tuple(observation_space.shape)
    hidden = tuple(config.hidden_sizes)
    if isinstance(observation_space, EncodedBox):
        return TorsoSpec(shape, hidden, PartsEncoder(observation_space.layout, shape[:-1], config.torso), 1.0)
    torso = auto_torso(shape) if config.torso == "auto" else config.torso
    scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
    return TorsoSpec(shape, hidden, None if torso == "mlp" else image_convolutions(torso, shape), scale)


def check_q_network(config: NetworkConfig, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, in one `ConfigError` line, what `build_q_network` would refuse (a torso that does
    not fit the observations, a feature head without features, weights larger than this machine's
    memory) without allocating its layers: for a command to check before it writes anything, when
    the roles that build the network run in other processes."""
    spec = torso_spec(config, observation_space)
    if config.action_features:
        published_action_features(action_space)
        heads = config.action_embedding_size + int(config.dueling)
    else:
        heads = num_actions(action_space) + int(config.dueling)
    check_weights_fit(feature_width(spec.obs_shape, spec.features), spec.hidden_sizes, heads)


def published_action_features(action_space: gym.Space) -> np.ndarray:
    """The features `network.action_features` scores actions by: an `ItemSpace`'s, or one line."""
    if not isinstance(action_space, ItemSpace):
        raise ConfigError(
            f"network.action_features=true needs an action space that publishes item features (an ItemSpace, "
            f"as distdqn/Recommend-v0's); this env's is {action_space}"
        )
    return action_space.features


def build_q_network(
    config: NetworkConfig, observation_space: gym.Space, action_space: gym.Space
) -> QNetwork | ActionFeatureQNetwork:
    """A Q-network sized for the spaces (the action space must be Discrete)."""
    actions = num_actions(action_space)
    spec = torso_spec(config, observation_space)
    if config.action_features:
        features = published_action_features(action_space)
        return ActionFeatureQNetwork(spec, features, config.action_embedding_size, config.dueling)
    return QNetwork(spec.obs_shape, actions, spec.hidden_sizes, config.dueling, spec.features, spec.input_scale)
