"""DQN math against numbers computed by hand."""

import pytest
import torch
from torch import nn

from distdqn.losses import dqn_loss, td_target, update_target


def test_td_target_max_uses_target_network_max():
    returns = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.0])  # second transition terminated
    next_q_target = torch.tensor([[2.0, 3.0], [10.0, -1.0]])
    # y0 = 1 + 0.9 * 3 = 3.7 ; y1 = 0.5 + 0 * 10 = 0.5
    assert torch.allclose(td_target(returns, discounts, next_q_target), torch.tensor([3.7, 0.5]))


def test_td_target_double_dqn_selects_with_online_and_values_with_target():
    returns = torch.tensor([1.0, 0.0])
    discounts = torch.tensor([0.5, 0.81])  # 0.81 = gamma**2 for a 2-step return
    next_q_target = torch.tensor([[2.0, 3.0], [4.0, 1.0]])
    next_q_online = torch.tensor([[5.0, 0.0], [0.0, 7.0]])  # picks action 0, then action 1
    # y0 = 1 + 0.5 * Qt[0, 0] = 1 + 0.5 * 2 = 2.0 ; y1 = 0 + 0.81 * Qt[1, 1] = 0.81
    target = td_target(returns, discounts, next_q_target, next_q_online)
    assert torch.allclose(target, torch.tensor([2.0, 0.81]))


def test_huber_loss_is_quadratic_inside_and_linear_outside_delta():
    q = torch.tensor([1.0, 0.0], requires_grad=True)
    target = torch.tensor([1.5, 3.0])
    loss, td_abs = dqn_loss(q, target, kind="huber")
    # errors 0.5 -> 0.5 * 0.25 = 0.125 ; 3.0 -> 3.0 - 0.5 = 2.5 ; mean 1.3125
    assert loss.item() == pytest.approx(1.3125)
    assert torch.allclose(td_abs, torch.tensor([0.5, 3.0]))
    loss.backward()
    # d/dq of mean: (q - y) / 2 inside, -sign / 2 outside -> [-0.25, -0.5]
    assert torch.allclose(q.grad, torch.tensor([-0.25, -0.5]))


def test_importance_weights_scale_each_transition():
    q = torch.tensor([0.0, 0.0])
    target = torch.tensor([2.0, 4.0])
    loss, _ = dqn_loss(q, target, weights=torch.tensor([1.0, 0.25]), kind="mse")
    # 0.5 * 4 * 1 = 2 ; 0.5 * 16 * 0.25 = 2 ; mean 2
    assert loss.item() == pytest.approx(2.0)


def test_target_is_not_differentiated():
    q = torch.tensor([1.0], requires_grad=True)
    target = q * 2  # would give a gradient through the target if not detached
    loss, _ = dqn_loss(q, target, kind="mse")
    loss.backward()
    assert q.grad.item() == pytest.approx(-1.0)  # d/dq 0.5 (q - 2)^2 at q=1, target held fixed


def _linear(value: float) -> nn.Linear:
    layer = nn.Linear(1, 1)
    nn.init.constant_(layer.weight, value)
    nn.init.constant_(layer.bias, value)
    return layer


def test_hard_target_update_copies():
    target, online = _linear(0.0), _linear(2.0)
    update_target(target, online, tau=1.0)
    assert target.weight.item() == 2.0 and target.bias.item() == 2.0


def test_soft_target_update_is_polyak_average():
    target, online = _linear(1.0), _linear(3.0)
    update_target(target, online, tau=0.25)
    # 0.25 * 3 + 0.75 * 1 = 1.5
    assert target.weight.item() == pytest.approx(1.5)
    assert online.weight.item() == pytest.approx(3.0)
