import pytest

from distdqn.schedules import apex_epsilon, learning_rate, linear_schedule


def test_linear_schedule_interpolates_then_holds():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 10_000) == pytest.approx(0.1)


def test_learning_rate_falls_linearly_over_env_steps_then_holds():
    # 2e-3 -> 2e-4 over 30,000 env steps: 6e-5 less per 1,000 steps
    assert learning_rate(2e-3, 2e-4, 30_000, 0) == 2e-3
    assert learning_rate(2e-3, 2e-4, 30_000, 10_000) == pytest.approx(1.4e-3)
    assert learning_rate(2e-3, 2e-4, 30_000, 25_000) == pytest.approx(5e-4)
    assert learning_rate(2e-3, 2e-4, 30_000, 30_000) == 2e-4
    assert learning_rate(2e-3, 2e-4, 30_000, 1_000_000) == 2e-4


def test_learning_rate_is_constant_without_an_end():
    assert learning_rate(2e-3, None, 30_000, 0) == learning_rate(2e-3, None, 30_000, 50_000) == 2e-3


def test_apex_epsilons_match_the_paper_formula():
    # N = 8, eps = 0.4, alpha = 7: eps_i = 0.4 ** (1 + i)
    epsilons = [apex_epsilon(i, 8) for i in range(8)]
    assert epsilons[0] == pytest.approx(0.4)
    assert epsilons[1] == pytest.approx(0.16)
    assert epsilons[7] == pytest.approx(0.4**8)
    assert epsilons == sorted(epsilons, reverse=True)


def test_apex_epsilon_single_actor_and_bad_index():
    assert apex_epsilon(0, 1) == 0.4
    with pytest.raises(ValueError):
        apex_epsilon(3, 3)
