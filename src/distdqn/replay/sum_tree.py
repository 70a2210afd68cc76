"""A sum tree over NumPy arrays: batched updates and batched proportional lookups.

Every operation works a whole level at a time, so a batch of B updates or draws costs
O(log capacity) NumPy calls, not B * log(capacity) Python steps. Parents are recomputed from
their children rather than adjusted by deltas, so float error never accumulates.
"""

from __future__ import annotations

import numpy as np

from distdqn.errors import CheckpointError


class SumTree:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._leaf_base = 1 << max(1, (capacity - 1).bit_length())
        self._depth = self._leaf_base.bit_length() - 1
        self._nodes = np.zeros(2 * self._leaf_base, np.float64)

    @property
    def total(self) -> float:
        return float(self._nodes[1])

    @property
    def nbytes(self) -> int:
        return self._nodes.nbytes

    @property
    def nodes(self) -> np.ndarray:
        """The whole tree (leaves and sums), for snapshots."""
        return self._nodes

    def restore(self, nodes: np.ndarray) -> None:
        if nodes.shape != self._nodes.shape or nodes.dtype != self._nodes.dtype:
            raise CheckpointError(
                f"a sum tree of {nodes.dtype}{list(nodes.shape)} does not fit {list(self._nodes.shape)}"
            )
        self._nodes = nodes if nodes.flags.writeable else nodes.copy()

    def values(self, indices: np.ndarray) -> np.ndarray:
        return self._nodes[self._leaf_base + np.asarray(indices)]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaf values (non-negative); with repeated indices the last value wins.

        Parents are rewritten level by level; a parent listed twice is just written twice with
        the same sum, which is cheaper than deduplicating.
        """
        nodes = self._leaf_base + np.asarray(indices, np.int64)
        if nodes.size == 0:
            return
        self._nodes[nodes] = values
        for _ in range(self._depth):
            nodes = nodes >> 1
            self._nodes[nodes] = self._nodes[2 * nodes] + self._nodes[2 * nodes + 1]

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf index for each target mass in [0, total): the leaf whose prefix range holds it."""
        targets = np.minimum(np.asarray(targets, np.float64), np.nextafter(self.total, 0.0))
        nodes = np.ones(len(targets), np.int64)
        while nodes[0] < self._leaf_base:
            left = self._nodes[2 * nodes]
            go_right = (targets >= left) & (self._nodes[2 * nodes + 1] > 0.0)
            targets = np.where(go_right, targets - left, targets)
            nodes = 2 * nodes + go_right
        return nodes - self._leaf_base
