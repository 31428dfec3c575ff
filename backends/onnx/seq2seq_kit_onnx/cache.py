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
``t`` positions this cache sees into a new buffer half as long again (at most ``limit``).
:meth:`take` (a reorder) copies the rows it keeps into a new buffer with a little spare,
or with room for one position when the cache it reorders was itself reordered one step
before (beam search reorders at every step: spare positions would be zeroed and read for
nothing).
Positions a state sees are never written again, so a step leaves the state it was given
unchanged (the backend contract's rule) while greedy and beam decoding append in amortised
O(1). The same rule as the NumPy backend's ``kv_cache``.
"""

from __future__ import annotations

import numpy as np

#: Positions of a first buffer, and the spare positions a reordered one keeps.
FIRST_CAPACITY = 16


class _Buffer:
    """``array`` [B, N, capacity, d]; ``filled``: positions written so far; ``taken_at``:
    the positions it was made with by a reorder (None: not made by one)."""

    __slots__ = ("array", "filled", "taken_at")

    def __init__(self, array: np.ndarray, filled: int, taken_at: int | None = None):
        self.array, self.filled, self.taken_at = array, filled, taken_at


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
            buffer = self._copy(None, _spare(length, self.limit))
        buffer.array[:, :, length] = new[:, :, 0]
        buffer.filled = length + 1
        return Cache(buffer, length + 1, self.limit)

    def take(self, index: np.ndarray) -> Cache:
        """Rows ``index`` (int [B'], negative ones from the end) of this cache, in a buffer
        of their own. ``IndexError`` for a row out of range."""
        index = np.asarray(index, dtype=np.int64)
        batch = self._buffer.array.shape[0]
        if index.size and (index.min() < -batch or index.max() >= batch):
            raise IndexError(f"row index out of range for a batch of {batch}")
        index = index % max(batch, 1)
        # a little room only: greedy decoding reorders whenever a row finishes, and every
        # spare position is zeroed here and read by each step's attention; room for the
        # next position alone where reorders follow each other (beam search)
        spare = 1 if self._buffer.taken_at == self.length - 1 else FIRST_CAPACITY
        capacity = max(self.length, min(self.length + spare, self.limit))
        buffer = self._copy(index, capacity)
        buffer.taken_at = self.length
        return Cache(buffer, self.length, self.limit)

    def _copy(self, rows: np.ndarray | None, capacity: int) -> _Buffer:
        """The positions this cache sees (of ``rows``, or all rows) in a new buffer of
        ``capacity``, the rest zeros."""
        seen, length = self.values, self.length
        batch = seen.shape[0] if rows is None else len(rows)
        array = np.empty((batch, seen.shape[1], capacity, seen.shape[3]), seen.dtype)
        # not np.take(..., out=): into a strided view it is some 4x slower
        array[:, :, :length] = seen if rows is None else self._buffer.array[rows, :, :length]
        array[:, :, length:] = 0
        return _Buffer(array, length)


def _spare(length: int, limit: int) -> int:
    """The capacity of a new buffer for ``length`` positions and more: half as many again
    (at least :data:`FIRST_CAPACITY`), at most ``limit``, so that appending copies in
    amortised O(1) while the step graph, which reads the whole buffer, reads at most about
    a third more than the positions in use."""
    return max(length + 1, min(length + max(FIRST_CAPACITY, length // 2), limit))


def _zeros(like: np.ndarray, capacity: int) -> np.ndarray:
    batch, heads, _, width = like.shape
    return np.zeros((batch, heads, capacity, width), like.dtype)
