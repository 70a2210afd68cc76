"""Frame stacks: live stacks for acting equal the stacks replay rebuilds from single frames."""

import numpy as np

from distdqn.frames import FrameStacker, stack_positions


def test_stack_positions_clamp_to_the_episode_start():
    positions = np.array([10, 11, 12, 20])
    starts = np.array([10, 10, 10, 15])
    assert stack_positions(positions, starts, 4).tolist() == [
        [10, 10, 10, 10],
        [10, 10, 10, 11],
        [10, 10, 11, 12],
        [17, 18, 19, 20],
    ]


def test_frame_stacker_repeats_the_first_frame_of_an_episode():
    stacker = FrameStacker(2, (1,), np.uint8, depth=3)
    stacker.push(np.array([[5], [7]], np.uint8), np.array([True, True]))
    assert stacker.stacks[:, :, 0].tolist() == [[5, 5, 5], [7, 7, 7]]
    stacker.push(np.array([[6], [1]], np.uint8), np.array([False, True]))
    assert stacker.stacks[:, :, 0].tolist() == [[5, 5, 6], [1, 1, 1]]
    stacker.push(np.array([[9], [2]], np.uint8), np.array([False, False]))
    assert stacker.stacks[:, :, 0].tolist() == [[5, 6, 9], [1, 1, 2]]
