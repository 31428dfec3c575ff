"""A growing decoder cache (a Transformer's self-attention keys or values) that the model
owns, so that a step appends one position instead of the graph concatenating the whole
history into a new tensor.

A :class:`Cache` is the first ``length`` positions (axis 2) of a buffer
``[B, N, capacity, d]`` with spare capacity, shared with the states it grew from. The step
graph is fed the whole buffer, which is contiguous (onnxruntime reads it without copying),
and ignores the positions from ``length`` on (its ``position`` input is ``length``); the
spare positions are zeros, never NaN, because a masked weight of 0 times NaN is NaN.

Appending position ``t`` writes into the shared buffer when nobody has written position
``t`` yet; otherwise (the same state stepped twice, or a full buffer) it first copies the
``t`` positions this cache sees into a new buffer, twice as long (at most ``limit``).
Positions a state sees are never written again, so a step leaves the state it was given
unchanged (the backend contract's rule) while greedy and beam decoding append in amortised
O(1). The same rule as the NumPy backend's ``kv_cache``.
"""

from __future__ import annotations

import numpy as np

#: Positions of a first buffer: most num2words outputs fit without a copy.
FIRST_CAPACITY = 16


class _Buffer:
    """``array`` [B, N, capacity, d]; ``filled``: positions written so far."""

    __slots__ = ("array", "filled")

    def __init__(self, array: np.ndarray, filled: int):
        self.array, self.filled = array, filled


class Cache:
    """The first ``length`` positions along axis 2 of a shared buffer. Immutable from the
    outside: :meth:`append` and :meth:`take` return new caches.

    Args (of :meth:`empty`):
        like: an array [B, N, 0, d] (the encoder's empty cache): batch, heads, width, dtype.
        limit: the most positions the cache will ever hold (the model's ``max_positions``).
    """

    __slots__ = ("_buffer", "length", "limit")

    def __init__(self, buffer: _Buffer, length: int, limit: int):
        self._buffer, self.length, self.limit = buffer, length, limit

    @classmethod
    def empty(cls, like: np.ndarray, limit: int) -> Cache:
        """No positions yet, room for ``min(FIRST_CAPACITY, limit)`` before a copy."""
        return cls(_Buffer(_zeros(like, min(FIRST_CAPACITY, max(1, limit))), 0), 0, limit)

    @property
    def buffer(self) -> np.ndarray:
        """The whole buffer [B, N, capacity, d], C-contiguous; positions ``length`` and on
        are not this cache's (do not write)."""
        return self._buffer.array

    @property
    def values(self) -> np.ndarray:
        """[B, N, length, d] (a view: do not write)."""
        return self._buffer.array[:, :, : self.length]

    def append(self, new: np.ndarray) -> Cache:
        """This cache plus one position: ``new`` [B, N, 1, d]."""
        buffer, length = self._buffer, self.length
        if buffer.filled != length or length == buffer.array.shape[2]:
            capacity = min(max(FIRST_CAPACITY, 2 * length), self.limit)
            buffer = self._copy(np.s_[:], max(capacity, length + 1))
        buffer.array[:, :, length] = new[:, :, 0]
        buffer.filled = length + 1
        return Cache(buffer, length + 1, self.limit)

    def take(self, index: np.ndarray) -> Cache:
        """Rows ``index`` (int [B']) of this cache, in a buffer of their own."""
        return Cache(self._copy(index, self._buffer.array.shape[2]), self.length, self.limit)

    def _copy(self, rows, capacity: int) -> _Buffer:
        seen = self.values[rows]
        array = _zeros(seen, capacity)
        array[:, :, : self.length] = seen
        return _Buffer(array, self.length)


def _zeros(like: np.ndarray, capacity: int) -> np.ndarray:
    batch, heads, _, width = like.shape
    return np.zeros((batch, heads, capacity, width), like.dtype)
