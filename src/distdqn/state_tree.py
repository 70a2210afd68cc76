"""Role state as a tree of JSON values and NumPy arrays, split apart for writing without pickle.

A role's `snapshot()` returns nested dicts and lists of plain values (str, int, float, bool,
None) and arrays. A checkpoint stores the arrays one file each and the rest as JSON, where each
array is replaced by a reference `{"array": name}`; joining reads the referenced arrays back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from distdqn.errors import CheckpointError

ARRAY_REF = "array"


def split_arrays(tree: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(the tree with every array replaced by a reference, {reference name: array}). Names
    follow the path to the array, so a snapshot's files say what they hold."""
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, np.ndarray):
            name = f"{len(arrays):05d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', path)[:80]}"
            arrays[name] = node
            return {ARRAY_REF: name}
        if isinstance(node, dict):
            if ARRAY_REF in node:
                raise ValueError(f"state key {ARRAY_REF!r} at {path} is reserved")
            return {key: walk(value, f"{path}.{key}" if path else str(key)) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(value, f"{path}.{index}") for index, value in enumerate(node)]
        if node is None or isinstance(node, (str, bool, int, float)):
            return node
        raise TypeError(f"state at {path} is a {type(node).__name__}, not a JSON value or an array")

    return walk(tree, ""), arrays


def join_arrays(tree: Any, load: Callable[[str], np.ndarray]) -> Any:
    """The tree with every reference replaced by `load(name)`."""
    if isinstance(tree, dict):
        if set(tree) == {ARRAY_REF}:
            name = tree[ARRAY_REF]
            if not isinstance(name, str):
                raise CheckpointError(f"an array reference names {name!r}, not a file")
            return load(name)
        return {key: join_arrays(value, load) for key, value in tree.items()}
    if isinstance(tree, list):
        return [join_arrays(value, load) for value in tree]
    return tree


def copy_arrays(tree: Any) -> Any:
    """The tree with every array copied: a snapshot must not change while it is being written."""
    if isinstance(tree, np.ndarray):
        return tree.copy()
    if isinstance(tree, dict):
        return {key: copy_arrays(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [copy_arrays(value) for value in tree]
    return tree
