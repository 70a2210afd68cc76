"""n-step folding: termination does not bootstrap, truncation does, autoreset steps open nothing."""

import numpy as np
import pytest

from distdqn.replay.nstep import NStepAccumulator

GAMMA = 0.5


def _step(acc, reward, terminated=False, truncated=False):
    return acc.step(np.array([0.0]), np.array([reward]), np.array([terminated]), np.array([truncated]))


def _records(completed):
    return sorted(
        zip(
            completed.positions.tolist(),
            completed.returns.tolist(),
            completed.discounts.tolist(),
            completed.offsets.tolist(),
            strict=True,
        )
    )


def test_full_window_completes_with_gamma_to_the_n():
    acc = NStepAccumulator(1, n_step=3, gamma=GAMMA)
    assert _records(_step(acc, 1.0)) == []
    assert _records(_step(acc, 2.0)) == []
    # record 0: 1 + 0.5 * 2 + 0.25 * 4 = 3, bootstrap 3 steps later with 0.5 ** 3
    assert _records(_step(acc, 4.0)) == [(0, 3.0, 0.125, 3)]
    # record 1: 2 + 0.5 * 4 + 0.25 * 8 = 6
    assert _records(_step(acc, 8.0)) == [(1, 6.0, 0.125, 3)]


def test_termination_completes_all_pending_without_bootstrap():
    acc = NStepAccumulator(1, n_step=3, gamma=GAMMA)
    _step(acc, 1.0)
    done = _step(acc, 2.0, terminated=True)
    # record 0: 1 + 0.5 * 2 = 2 ; record 1: 2 ; both discount 0
    assert _records(done) == [(0, 2.0, 0.0, 2), (1, 2.0, 0.0, 1)]


def test_truncation_bootstraps_from_the_final_observation():
    acc = NStepAccumulator(1, n_step=3, gamma=GAMMA)
    _step(acc, 1.0)
    done = _step(acc, 2.0, truncated=True)
    # same sums as termination, but discounts gamma**m toward the final observation at position 2
    assert _records(done) == [(0, 2.0, 0.25, 2), (1, 2.0, 0.5, 1)]


def test_autoreset_step_opens_no_record_and_next_episode_starts_clean():
    acc = NStepAccumulator(1, n_step=2, gamma=GAMMA)
    _step(acc, 1.0, terminated=True)  # position 0 ends the episode; position 1 is the final obs
    assert acc.resetting.tolist() == [True]
    assert _records(_step(acc, 0.0)) == []  # gymnasium's autoreset step: reward 0, nothing opened
    _step(acc, 3.0)  # position 2, first step of the new episode
    # record 2: 3 + 0.5 * 5 = 5.5, nothing from the previous episode leaks in
    assert _records(_step(acc, 5.0)) == [(2, 5.5, 0.25, 2)]


def test_lanes_are_independent():
    acc = NStepAccumulator(2, n_step=2, gamma=GAMMA)
    acc.step(np.zeros(2), np.array([1.0, 10.0]), np.array([False, True]), np.array([False, False]))
    done = acc.step(np.zeros(2), np.array([2.0, 0.0]), np.array([False, False]), np.array([False, False]))
    assert done.lanes.tolist() == [0]
    assert done.returns.tolist() == pytest.approx([2.0])
    assert done.positions.tolist() == [0]
