"""Role state split into JSON and arrays and joined back, as checkpoints store it."""

import json

import numpy as np
import pytest

from distdqn.state_tree import copy_arrays, join_arrays, split_arrays


def test_split_then_join_gives_the_tree_back_with_json_between():
    tree = {
        "rng": {"state": {"state": 2**100, "inc": 7}, "bit_generator": "PCG64"},
        "lanes": [np.arange(3), {"frames": np.zeros((2, 2), np.uint8)}],
        "held": None,
        "position": 12,
        "flags": (True, 0.5),
    }
    skeleton, arrays = split_arrays(tree)
    assert len(arrays) == 2 and all(isinstance(value, np.ndarray) for value in arrays.values())
    assert all("/" not in name for name in arrays)  # names become file names
    joined = join_arrays(json.loads(json.dumps(skeleton)), arrays.__getitem__)
    assert joined["rng"] == tree["rng"] and joined["position"] == 12 and joined["held"] is None
    assert joined["flags"] == [True, 0.5]  # JSON has lists only
    np.testing.assert_array_equal(joined["lanes"][0], np.arange(3))
    assert joined["lanes"][1]["frames"].dtype == np.uint8


def test_values_json_cannot_hold_are_refused_by_name():
    with pytest.raises(TypeError, match=r"state at env.0 is a set"):
        split_arrays({"env": [{1, 2}]})
    with pytest.raises(ValueError, match="reserved"):
        split_arrays({"x": {"array": 1}})


def test_copied_arrays_do_not_change_with_the_original():
    original = {"a": [np.zeros(3)]}
    copied = copy_arrays(original)
    original["a"][0][:] = 1
    assert copied["a"][0].sum() == 0
