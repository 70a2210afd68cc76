import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from distdqn.cli import main
from distdqn.config import NetworkConfig
from distdqn.envs.item_space import ItemSpace
from distdqn.envs.observations import EncodeObservations
from distdqn.errors import ConfigError
from distdqn.losses import update_target
from distdqn.networks import build_q_network, check_q_network, load_weights

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


@pytest.mark.parametrize(
    ("torso", "shape", "message"),
    [
        (
            "minatar_cnn",
            (4,),
            r"network.torso = 'minatar_cnn' needs image observations \(height x width x channels, sides of at "
            r"least 3\); this env's observations have shape \(4,\): use network.torso = 'mlp' \(or 'auto'\)$",
        ),
        ("nature_cnn", (4,), r"'nature_cnn' needs image observations \(.*sides of at least 36\); .* shape \(4,\)"),
        ("nature_cnn", (3, 2), r"'nature_cnn' needs image observations .* shape \(3, 2\)"),
        (
            "nature_cnn",
            (10, 10, 4),
            r"'nature_cnn' needs images of at least 36x36 pixels .* shape \(10, 10, 4\), images of 10x10$",
        ),
        ("nature_cnn", (4, 84, 20), r"at least 36x36 pixels .* shape \(4, 84, 20\), images of 84x20$"),
        ("minatar_cnn", (2, 10, 4), r"'minatar_cnn' needs images of at least 3x3 pixels .* images of 2x10$"),
    ],
)
def test_a_torso_that_does_not_fit_the_observations_is_one_config_error(torso: str, shape, message: str):
    """`--set network.torso=minatar_cnn` on CartPole was a ValueError traceback (nature_cnn on
    MinAtar's 10x10 frames a RuntimeError inside torch's convolution)."""
    space = gym.spaces.Box(0, 1, shape, np.float32)
    for check in (build_q_network, check_q_network):
        with pytest.raises(ConfigError, match=message):
            check(NetworkConfig(torso=torso), space, ACTIONS)


def test_a_torso_for_encoded_observations_without_an_image_is_one_config_error():
    space = EncodeObservations(gym.make("Blackjack-v1")).observation_space
    with pytest.raises(ConfigError, match=r"'minatar_cnn' needs an image part .*this env's has parts of shapes"):
        build_q_network(NetworkConfig(torso="minatar_cnn"), space, ACTIONS)


def test_the_cli_refuses_a_torso_for_cartpole_in_one_line_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--set", "network.torso=minatar_cnn", "--total-steps", "50", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distdqn: error: network.torso = 'minatar_cnn' needs image observations") and "\n" not in err
    assert "shape (4,)" in err and not run_dir.exists()


@pytest.mark.parametrize(
    ("hidden", "dueling", "actions", "message"),
    [
        (
            (256, 256),
            True,
            10**11,
            r"a Q-network of 25,700,000,067,841 parameters \(6 input features, network.hidden_sizes=\[256, 256\], "
            r"100,000,000,001 head outputs\) needs 95,740.0 GiB for its float32 weights alone; "
            r"this machine has 8.0 GiB$",
        ),
        ((100_000, 100_000), False, 5, r"10,001,300,005 parameters .* needs 37.3 GiB"),
    ],
)
def test_weights_larger_than_memory_are_refused_before_allocating(eight_gib, hidden, dueling, actions, message):
    """A Recommend-v0 catalog of 10**8 items asked torch for a 95 GiB head and ended in its
    allocation traceback. The sizes here are beyond any machine, so that code without the check
    fails at once instead of filling this one."""
    config = NetworkConfig(hidden_sizes=hidden, dueling=dueling)
    for check in (build_q_network, check_q_network):
        with pytest.raises(ConfigError, match=message):
            check(config, OBS, gym.spaces.Discrete(actions))
    check_q_network(NetworkConfig(hidden_sizes=(256, 256)), OBS, gym.spaces.Discrete(10**6))  # 1 GiB: fits


ITEMS = ItemSpace(np.array([[1, 0, 0.5], [0, 1, -0.5], [1, 0, 0.5], [0, 1, 0.9]], np.float32))


@pytest.mark.parametrize("dueling", [False, True])
def test_the_action_feature_head_scores_an_item_by_its_features(dueling: bool):
    """Items with the same features get the same Q-value, and the network has no weight of its own
    per item: a catalog ten times larger has exactly its parameters."""
    config = NetworkConfig(hidden_sizes=(16,), action_features=True, action_embedding_size=8, dueling=dueling)
    network = build_q_network(config, OBS, ITEMS)
    q = network(torch.randn(6, 3, 2))
    assert q.shape == (6, 4)
    assert torch.equal(q[:, 0], q[:, 2]) and not torch.allclose(q[:, 0], q[:, 1])
    larger = build_q_network(config, OBS, ItemSpace(np.tile(ITEMS.features, (10, 1))))
    assert sum(p.numel() for p in larger.parameters()) == sum(p.numel() for p in network.parameters())
    assert "action_features" not in network.state_dict()  # checkpoints and published weights skip the catalog
    load_weights(larger, {name: value.detach().numpy() for name, value in network.state_dict().items()})
    observations = torch.randn(3, 3, 2)
    assert torch.allclose(larger(observations)[:, :4], network(observations))
    if dueling:
        observations = torch.randn(5, 3, 2)
        value = network.value(network.features(observations))
        assert torch.allclose(network(observations).mean(dim=1, keepdim=True), value, atol=1e-6)


def test_the_action_feature_head_learns_one_items_value_from_anothers():
    """Gradient steps on item 0 alone move item 2's Q-value (same features) with it; a plain head
    leaves an untried item where it was."""
    torch.manual_seed(0)
    observations = torch.randn(32, 3, 2)
    for action_features, moves in ((True, True), (False, False)):
        network = build_q_network(NetworkConfig(hidden_sizes=(16,), action_features=action_features), OBS, ITEMS)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
        before = network(observations)[:, 2].detach()
        for _ in range(50):
            loss = (network(observations)[:, 0] - 5.0).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = network(observations)[:, 2].detach()
        assert (after.mean() - before.mean() > 3.0) == moves, (action_features, before.mean(), after.mean())


def test_a_frozen_feature_head_embeds_the_items_once_per_weights():
    """An actor's, the evaluator's or the target's copy embeds the catalog once, and again after
    each way its weights are written; the trained copy embeds at every forward, because the fused
    optimizer's step would leave a kept embedding stale."""
    config = NetworkConfig(hidden_sizes=(16,), action_features=True, action_embedding_size=8, dueling=True)
    online = build_q_network(config, OBS, ITEMS)
    frozen = copy.deepcopy(online).requires_grad_(False)
    embeddings = []
    for network in (online, frozen):
        network.action_embedding.register_forward_hook(lambda module, args, out: embeddings.append(module))
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-2, fused=True)
    observations = torch.randn(5, 3, 2)

    def fresh() -> torch.Tensor:
        return copy.deepcopy(frozen).requires_grad_(True)(observations).detach()  # embeds anew

    writes = {
        "load_weights": lambda: load_weights(frozen, {k: v.detach().numpy() for k, v in online.state_dict().items()}),
        "hard target update": lambda: update_target(frozen, online, 1.0),
        "soft target update": lambda: update_target(frozen, online, 0.5),
        "load_state_dict": lambda: frozen.load_state_dict(online.state_dict()),
    }
    for name, write in writes.items():
        online(observations).pow(2).mean().backward()
        optimizer.step()
        embeddings.clear()
        online(observations), online(observations)
        assert embeddings == [online.action_embedding] * 2, name
        write()
        embeddings.clear()
        first, second = frozen(observations), frozen(observations)
        assert embeddings == [frozen.action_embedding], name
        assert torch.equal(first, second) and torch.allclose(first, fresh(), atol=1e-6), name
    assert torch.allclose(frozen(observations), online(observations).detach(), atol=1e-6)  # last: a full copy
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.allclose(frozen(observations).float(), first, atol=0.1)


def test_the_action_feature_head_needs_an_action_space_with_features():
    with pytest.raises(ConfigError, match=r"publishes item features .* this env's is Discrete\(5\)$"):
        check_q_network(NetworkConfig(action_features=True), OBS, ACTIONS)
    check_q_network(NetworkConfig(action_features=True), OBS, ITEMS)


@pytest.mark.parametrize(
    ("features", "message"),
    [(np.zeros(3), "2-D"), (np.zeros((0, 2)), "2-D"), (np.zeros((3, 0)), "2-D"), (np.full((2, 2), np.nan), "finite")],
)
def test_item_features_are_a_finite_table(features, message: str):
    with pytest.raises(ValueError, match=message):
        ItemSpace(features)
