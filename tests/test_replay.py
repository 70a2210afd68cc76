"""Sum tree, prioritized sampling, ring wrap-around and n-step bootstrap lookup."""

import numpy as np
import pytest

from distdqn.errors import CheckpointError
from distdqn.replay import PrioritizedReplay, SumTree
from distdqn.types import PriorityUpdate


def test_sum_tree_totals_and_prefix_lookup():
    tree = SumTree(5)
    tree.update(np.array([0, 1, 2, 3, 4]), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    # prefix ranges: 0:[0,1) 2:[1,3) 3:[3,6) 4:[6,10); leaf 1 has no mass and is never found
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 6.0, 9.999])).tolist() == [0, 0, 2, 2, 3, 4, 4]
    tree.update(np.array([4]), np.array([0.0]))
    assert tree.total == 6.0
    assert tree.find(np.array([5.999999])).tolist() == [3]


def _replay(num_lanes=1, lane_capacity=8, alpha=1.0, obs_shape=(1,), frame_stack=1):
    return PrioritizedReplay(
        num_lanes, lane_capacity, obs_shape, np.float32, alpha=alpha, priority_eps=0.0, seed=0, frame_stack=frame_stack
    )


def _write(replay, lane, first, count, episode_start=0):
    positions = np.arange(first, first + count)
    observations = positions.astype(np.float32).reshape(1, count, 1) + 100 * lane
    starts = np.full((1, count), episode_start)
    replay.write_steps(np.array([lane]), np.array([first]), observations, positions.reshape(1, count) % 2, starts, 3)


def _complete(replay, lane, positions, priorities, offset=1):
    positions = np.asarray(positions)
    n = len(positions)
    replay.complete(
        np.full(n, lane),
        positions,
        positions.astype(np.float32),
        np.full(n, 0.9, np.float32),
        np.full(n, offset),
        np.asarray(priorities, np.float64),
    )


def test_sampling_frequencies_follow_priorities():
    replay = _replay(alpha=1.0)
    _write(replay, 0, 0, 5)
    priorities = [1.0, 2.0, 3.0, 4.0]
    _complete(replay, 0, [0, 1, 2, 3], priorities)
    counts = np.zeros(8)
    for _ in range(2000):
        np.add.at(counts, replay.sample(32, beta=0.4).indices, 1)
    observed = counts[:4] / counts.sum()
    expected = np.array(priorities) / 10
    chi_square = ((counts[:4] - expected * counts.sum()) ** 2 / (expected * counts.sum())).sum()
    assert counts[4:].sum() == 0  # slot 4 is a step whose record has not completed
    assert chi_square < 16.3  # 3 degrees of freedom, p = 0.001
    assert observed == pytest.approx(expected, abs=0.01)


def test_alpha_zero_is_uniform_and_importance_weights_are_normalised():
    replay = _replay(alpha=0.0)
    _write(replay, 0, 0, 5)
    _complete(replay, 0, [0, 1, 2, 3], [0.1, 5.0, 50.0, 500.0])
    batch = replay.sample(4000, beta=0.4)
    frequencies = np.bincount(batch.indices, minlength=4)[:4] / 4000
    assert frequencies == pytest.approx([0.25] * 4, abs=0.03)
    assert np.allclose(batch.weights, 1.0)


def test_importance_weights_by_hand():
    replay = _replay(alpha=1.0)
    _write(replay, 0, 0, 3)
    _complete(replay, 0, [0, 1], [1.0, 3.0])
    batch = replay.sample(64, beta=1.0)
    # P = [0.25, 0.75], N = 2: w = (N P)^-1 = [2, 2/3] (the learner divides by the batch's max)
    assert np.allclose(batch.weights, np.where(batch.indices == 0, 2.0, 2.0 / 3.0))
    # as one shard, drawn with share 0.4, of a replay of 10: P = 0.4 [0.25, 0.75], w = (10 P)^-1
    batch = replay.sample(64, beta=1.0, total_size=10, share=0.4)
    assert np.allclose(batch.weights, np.where(batch.indices == 0, 1.0, 1.0 / 3.0))


def test_sample_rebuilds_bootstrap_observation_from_the_lane():
    replay = _replay()
    _write(replay, 0, 0, 6)
    _complete(replay, 0, [1], [1.0], offset=3)
    batch = replay.sample(4, beta=0.4)
    assert batch.observations[:, 0].tolist() == [1.0] * 4
    assert batch.next_observations[:, 0].tolist() == [4.0] * 4  # position 1 + offset 3
    assert batch.returns.tolist() == [1.0] * 4
    assert batch.discounts.tolist() == pytest.approx([0.9] * 4)


def test_ring_wraps_and_overwritten_slots_stop_being_sampled():
    replay = _replay(lane_capacity=8)
    _write(replay, 0, 0, 8)
    _complete(replay, 0, range(7), [1.0] * 7)
    assert replay.num_sampleable == 7
    _write(replay, 0, 8, 3)  # positions 8, 9, 10 overwrite slots 0, 1, 2
    assert replay.num_sampleable == 4
    _complete(replay, 0, [7, 8, 9], [1.0] * 3)
    batch = replay.sample(2000, beta=0.4)
    sampled_positions = set(batch.stamps.tolist())
    assert sampled_positions == {3, 4, 5, 6, 7, 8, 9}
    # position 9 is slot 1 and bootstraps from position 10 in slot 2, across the wrap
    wrapped = batch.stamps == 9
    assert batch.observations[wrapped, 0].tolist()[0] == 9.0
    assert batch.next_observations[wrapped, 0].tolist()[0] == 10.0


def test_completion_for_an_overwritten_step_is_dropped():
    replay = _replay(lane_capacity=4)
    _write(replay, 0, 0, 4)
    _write(replay, 0, 4, 2)  # positions 0 and 1 are gone
    _complete(replay, 0, [0, 2], [1.0, 1.0])
    assert replay.num_sampleable == 1
    assert set(replay.sample(100, beta=0.4).stamps.tolist()) == {2}


def test_priority_updates_apply_and_stale_ones_are_ignored():
    replay = _replay(lane_capacity=4, alpha=1.0)
    _write(replay, 0, 0, 3)
    _complete(replay, 0, [0, 1], [1.0, 1.0])
    batch = replay.sample(2, beta=0.4)
    replay.update_priorities(
        PriorityUpdate(np.array([0, 1]), np.array([0, 1]), np.zeros(2, np.int64), np.array([0.0, 9.0]))
    )
    assert replay._tree.values(np.array([0, 1])).tolist() == [0.0, 9.0]
    _write(replay, 0, 3, 2)  # position 4 now lives in slot 0
    replay.update_priorities(PriorityUpdate(np.array([0]), np.array([0]), np.zeros(1, np.int64), np.array([5.0])))
    assert replay._tree.values(np.array([0])).tolist() == [0.0]
    assert batch.indices.dtype == np.int64


def test_lanes_do_not_mix():
    replay = _replay(num_lanes=2, lane_capacity=4)
    _write(replay, 0, 0, 3)
    _write(replay, 1, 0, 3)
    _complete(replay, 1, [0, 1], [1.0, 1.0])
    batch = replay.sample(200, beta=0.4)
    assert set(batch.observations[:, 0].tolist()) == {100.0, 101.0}
    assert set((batch.next_observations[:, 0] - batch.observations[:, 0]).tolist()) == {1.0}


def test_a_lane_restarting_from_zero_invalidates_records_that_would_bootstrap_across():
    replay = _replay(lane_capacity=8)
    _write(replay, 0, 100, 8)  # positions 100..107 in slots 4..7, 0..3
    _complete(replay, 0, range(100, 105), [1.0] * 5, offset=3)
    assert replay.num_sampleable == 5
    _write(replay, 0, 0, 2)  # the actor restarted: positions 0, 1 go to slots 0, 1
    # 104 (slot 0) is overwritten; 101..103 (slots 5..7) bootstrap into slots 0..2: no longer valid
    assert set(replay.sample(500, beta=0.4).stamps.tolist()) == {100}


def _expected_stacks(positions: np.ndarray, first: int) -> np.ndarray:
    """Stacks of 4 for `positions`, clamped at `first` (an episode start, or the first frame held)."""
    return np.maximum(positions[:, None] - np.arange(3, -1, -1)[None, :], first).astype(np.float32)


@pytest.mark.parametrize(("lane_capacity", "steps_per_write"), [(4, 1), (5, 2)])
def test_a_record_is_sampled_only_while_its_whole_stack_is_stored(lane_capacity, steps_per_write):
    """One lane, 1-step records that complete as an actor delivers them: with the write that holds
    their bootstrap observation, the last step's one write later. By then the oldest frame of the
    stack may be gone: step 18 of capacity 4 came back as [19, 16, 17, 18]."""
    replay = _replay(lane_capacity=lane_capacity, alpha=0.0, frame_stack=4)
    for first in range(0, 20, steps_per_write):
        _write(replay, 0, first, steps_per_write)
        records = np.arange(max(first - 1, 0), first + steps_per_write - 1)
        _complete(replay, 0, records, np.ones(len(records)))
    batch = replay.sample(200, beta=0.4)
    assert np.array_equal(batch.observations[:, :, 0], _expected_stacks(batch.stamps, 0))
    assert np.array_equal(batch.next_observations[:, :, 0], _expected_stacks(batch.stamps + 1, 0))
    assert replay.num_sampleable == lane_capacity - 4  # all but the pending record and the 3 oldest


def test_a_lane_new_to_the_buffer_stacks_only_frames_it_received():
    """A fresh shard (restarted, or joined mid-episode) gets a lane at position 20 of an episode
    that began at 0: its stacks start at 20, never at frames it never held (zeros)."""
    replay = _replay(lane_capacity=16, alpha=0.0, frame_stack=4)
    for first in (20, 23):
        _write(replay, 0, first, 3, episode_start=0)
        records = np.arange(max(first - 1, 20), first + 2)
        _complete(replay, 0, records, np.ones(len(records)))
    batch = replay.sample(200, beta=0.4)
    assert set(batch.stamps.tolist()) == set(range(20, 25))
    assert np.array_equal(batch.observations[:, :, 0], _expected_stacks(batch.stamps, 20))
    assert np.array_equal(batch.next_observations[:, :, 0], _expected_stacks(batch.stamps + 1, 20))


def test_the_memory_estimate_bounds_what_a_replay_allocates():
    from distdqn.replay.buffer import PrioritizedReplay, replay_bytes

    replay = PrioritizedReplay(3, 1000, (84, 84), np.dtype(np.uint8), 0.6, 1e-6, 0, frame_stack=4)
    estimate = replay_bytes(3000, (84, 84), np.dtype(np.uint8))
    assert replay.nbytes <= estimate < replay.nbytes * 1.01  # frames dominate: 7,056 bytes a slot


def test_a_restored_snapshot_samples_exactly_as_the_original_would():
    original = _replay(num_lanes=2, lane_capacity=8)
    for lane in (0, 1):
        _write(original, lane, 0, 11)  # wraps: the oldest three are overwritten
        _complete(original, lane, range(4, 10), np.arange(1.0, 7.0) + lane)
    original.sample(3, beta=0.4)  # the RNG has moved on
    snapshot = original.snapshot()
    _write(original, 0, 11, 1)  # the snapshot is a copy: later writes do not reach it
    restored = _replay(num_lanes=2, lane_capacity=8)
    restored.restore(snapshot)

    assert restored.num_sampleable == 12
    again = _replay(num_lanes=2, lane_capacity=8)
    again.restore(snapshot)
    first, second = restored.sample(6, beta=0.4), again.sample(6, beta=0.4)
    for field in first._fields:
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert set(first.stamps) <= set(range(4, 10))


def test_a_snapshot_restores_only_into_a_buffer_of_the_same_layout():
    snapshot = _replay(num_lanes=2, lane_capacity=8).snapshot()
    with pytest.raises(CheckpointError, match=r"replay observations is float32\[16, 1\].*needs float32\[24, 1\]"):
        _replay(num_lanes=3, lane_capacity=8).restore(snapshot)


def test_uneven_shards_draw_like_one_buffer_with_its_importance_weights():
    """Two shards of 3 and 6 transitions with their own priorities, drawn from as the loop does
    (rows per shard by multinomial over their masses, weights against the global size and mass):
    each transition's frequency and weight are those of one buffer holding all nine."""
    from distdqn.run.updates import plan_rows

    small, large = _replay(alpha=1.0), _replay(alpha=1.0)
    _write(small, 0, 0, 4)
    _write(large, 0, 0, 7)
    priorities = [np.array([1.0, 5.0, 2.0]), np.array([0.5, 3.0, 1.0, 4.0, 2.0, 0.5])]
    for shard, shard_priorities in zip((small, large), priorities, strict=True):
        _complete(shard, 0, np.arange(len(shard_priorities)), shard_priorities)
    one_buffer = np.concatenate(priorities) / np.concatenate(priorities).sum()
    masses = [small.mass, large.mass]
    counts = np.zeros(9)
    weights = np.full(9, np.nan)
    rng = np.random.default_rng(0)
    for rows in plan_rows(rng, masses, 32, 3000):
        for offset, shard, count, mass in zip((0, 3), (small, large), rows, masses, strict=True):
            batch = shard.sample(int(count), beta=0.6, total_size=9, share=mass / sum(masses))
            np.add.at(counts, offset + batch.indices, 1)
            weights[offset + batch.indices] = batch.weights
    expected = one_buffer * counts.sum()
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 26.1  # 8 degrees of freedom, p = 0.001
    assert np.allclose(weights, (9 * one_buffer) ** -0.6)
