"""Observation spaces users meet: encoded compactly at the env, decoded by the network, trained end to
end and evaluated from the checkpoint; unsupported spaces refused in one line."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import (
    Box,
    Dict,
    Discrete,
    MultiBinary,
    MultiDiscrete,
    Text,
    Tuple,
)

from distdqn.cli import main
from distdqn.config import EnvConfig, NetworkConfig, resolve_config
from distdqn.envs import make_env, make_vector_env, policy_space
from distdqn.envs.observations import EncodedBox, EncodeObservations, observation_layout
from distdqn.errors import EnvError
from distdqn.networks import build_q_network
from distdqn.run.train import train

QUIET = ["logging.progress=false", "logging.tensorboard=false"]
IMAGE = Box(0, 255, (36, 36, 3), np.uint8)  # HxWxC, the smallest the Nature CNN reads


class SpaceEnv(gym.Env):
    """Random observations of any space, 8 steps an episode; action 0 pays 1."""

    def __init__(self, space: gym.Space) -> None:
        self.observation_space = space
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), float(action == 0), self._t >= 8, False, {}


SPACES = {
    "distdqn_tests/Dict-v0": Dict(
        {"goal": Discrete(3, start=1), "position": Box(-1, 1, (2,), np.float32), "view": IMAGE}
    ),
    "distdqn_tests/Image-v0": IMAGE,
    "distdqn_tests/Text-v0": Text(8),
}
for env_id, space in SPACES.items():
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=SpaceEnv, kwargs={"space": space})


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("FrozenLake-v1", []),
        ("CliffWalking-v1", []),
        ("Blackjack-v1", []),
        ("distdqn_tests/Dict-v0", ["env.frame_stack=2"]),  # its HxWxC image part stacks along the channels
        ("distdqn_tests/Image-v0", []),
    ],
)
def test_space_trains_end_to_end_and_its_checkpoint_evaluates(
    tmp_path: Path, env_id: str, overrides: list[str], capsys
):
    config = resolve_config(
        env_id,
        overrides=QUIET
        + overrides
        + [
            "total_steps=320",
            "env.num_envs=2",
            "algorithm.learning_starts=64",
            "algorithm.batch_size=16",
            "replay.capacity=1000",
            "evaluation.every_steps=160",
            "evaluation.episodes=2",
            "checkpoint.every_steps=160",
        ],
    )
    counters = train(config, tmp_path / "run").counters
    assert counters.env_steps >= 320 and counters.updates > 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "checkpoints" / "latest"), "--episodes", "2", "--json"]) == 0
    assert '"episodes": 2' in capsys.readouterr().out


def test_encoding_is_one_compact_array_in_a_fixed_order():
    space = Tuple((Discrete(4, start=-2), MultiDiscrete([3, 5]), MultiBinary(2), Dict({"b": IMAGE, "a": Discrete(2)})))
    env = make_env(EnvConfig(id="distdqn_tests/Dict-v0"))  # mixes a float Box in: float32
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (1 + 2 + 36 * 36 * 3,)
    assert [part.name for part in env.observation_space.layout.parts] == ["goal", "position", "view"]
    encoded = EncodeObservations(SpaceEnv(space))  # all parts integers from 0 to 255: uint8, an image stays uint8
    assert encoded.observation_space.dtype == np.uint8 and encoded.observation_space.shape == (1 + 2 + 2 + 1 + 3888,)
    image = np.full((36, 36, 3), 7, np.uint8)
    flat = encoded.observation((-1, np.array([2, 4]), np.array([1, 0], np.int8), {"a": 1, "b": image}))
    assert flat.dtype == np.uint8 and flat[:6].tolist() == [1, 2, 4, 1, 0, 1] and (flat[6:] == 7).all()
    assert encoded.observation_space.contains(flat)
    # the layout travels with the space: through pickling (Ray) and frame stacking
    stacked = policy_space(EnvConfig(id="x", frame_stack=3), pickle.loads(pickle.dumps(encoded.observation_space)))
    assert isinstance(stacked, EncodedBox) and stacked.shape == (3, 3894)
    assert stacked.layout == encoded.observation_space.layout


def test_network_reads_discrete_parts_one_hot():
    env = make_env(EnvConfig(id="FrozenLake-v1"))
    assert env.observation_space.dtype == np.uint8 and env.observation_space.shape == (1,)
    network = build_q_network(resolve_config("FrozenLake-v1").network, env.observation_space, env.action_space)
    observations = torch.tensor([[0], [5], [15]], dtype=torch.uint8)
    assert torch.equal(network.torso[0](observations.float()), torch.eye(16)[[0, 5, 15]])
    assert network(observations).shape == (3, 4)


def test_raw_pong_frames_and_image_parts_go_through_a_cnn_channels_first():
    frames = make_vector_env(EnvConfig(id="ALE/Pong-v5"), 1)  # HxWxC (210, 160, 3), stacked 4 by the preset
    stack = policy_space(EnvConfig(id="ALE/Pong-v5", frame_stack=4), frames.single_observation_space)
    network = build_q_network(resolve_config("ALE/Pong-v5").network, stack, frames.single_action_space)
    assert network.torso[0][1].in_channels == 12  # 4 frames of 3 channels
    observations, _ = frames.reset(seed=0)
    assert network(torch.as_tensor(np.repeat(observations[:, None], 4, axis=1))).shape == (1, 6)
    dict_env = make_env(EnvConfig(id="distdqn_tests/Dict-v0"))
    network = build_q_network(NetworkConfig(), dict_env.observation_space, dict_env.action_space)
    view = network.torso[0].encoders[2]
    assert view[1].in_channels == 3
    image = torch.arange(36 * 36 * 3, dtype=torch.float32).reshape(1, 36, 36, 3)
    assert torch.equal(view[0](image), image.permute(0, 3, 1, 2))


def test_unsupported_spaces_are_refused_with_one_line_naming_the_space():
    with pytest.raises(
        EnvError,
        match=r"^env 'distdqn_tests/Text-v0' has observation space Text\(1, 8, .*; "
        r"distdqn supports Box, Discrete, MultiDiscrete, MultiBinary, Tuple and Dict",
    ):
        make_env(EnvConfig(id="distdqn_tests/Text-v0"))
    with pytest.raises(ValueError, match=r"whose part 'notes\.1' is Text"):
        observation_layout(Dict({"notes": Tuple((Discrete(2), Text(4)))}))


def test_cli_refuses_an_unsupported_space_in_one_line(tmp_path: Path):
    tests, src = Path(__file__).parent, Path(__file__).parent.parent / "src"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "distdqn",
            "train",
            "--env",
            "test_spaces:distdqn_tests/Text-v0",
            "--total-steps",
            "100",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(tests)]), "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "distdqn: error: env 'test_spaces:distdqn_tests/Text-v0' has observation space Text("
    )


@pytest.mark.learning
def test_frozen_lake_greedy_policy_reaches_the_goal(tmp_path: Path, capsys):
    config = resolve_config(
        "FrozenLake-v1",
        overrides=QUIET + ["env.kwargs={is_slippery: false}", "seed=0", "total_steps=5000", "stop_return=1.0"],
    )
    counters = train(config, tmp_path / "run").counters
    assert counters.solved_at_env_steps is not None and counters.solved_at_env_steps <= 5000
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "checkpoints" / "latest"), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] == 1.0
