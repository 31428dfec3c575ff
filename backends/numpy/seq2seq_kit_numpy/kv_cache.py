"""A decoder self-attention key/value cache that grows in place without changing what any
earlier decoder state sees.

Appending position ``t`` to a state's cache writes into the buffer the state shares with
its predecessors when nobody has written position ``t`` yet; otherwise (the same state
stepped twice, or a full buffer) it first copies the ``t`` positions it sees into a new
buffer. Positions a state sees are never written again, so ``step`` leaves the state it was
given unchanged (the contract's rule) while greedy and beam decoding append in amortised
O(1) instead of copying the whole history every step.
"""

from __future__ import annotations

import numpy as np


class _Buffer:
    """Keys and values [B, N, capacity, d]; ``filled``: positions written so far."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, filled: int):
        self.keys, self.values, self.filled = keys, values, filled


class KeyValueCache:
    """The first ``length`` positions of a shared buffer: keys and values [B, N, length, d].

    Immutable from the outside: :meth:`append` and :meth:`take` return new caches.
    """

    __slots__ = ("_buffer", "length")

    def __init__(self, buffer: _Buffer, length: int):
        self._buffer, self.length = buffer, length

    @classmethod
    def empty(cls, batch: int, heads: int, width: int, dtype: np.dtype, capacity: int = 16):
        """No positions yet, room for ``capacity`` before the first copy."""
        shape = (batch, heads, capacity, width)
        return cls(_Buffer(np.empty(shape, dtype), np.empty(shape, dtype), 0), 0)

    @property
    def keys(self) -> np.ndarray:
        """[B, N, length, d] (a view: do not write)."""
        return self._buffer.keys[:, :, : self.length]

    @property
    def values(self) -> np.ndarray:
        """[B, N, length, d] (a view: do not write)."""
        return self._buffer.values[:, :, : self.length]

    def append(self, keys: np.ndarray, values: np.ndarray) -> KeyValueCache:
        """This cache plus one position: ``keys``, ``values`` [B, N, 1, d]."""
        buffer, length = self._buffer, self.length
        if buffer.filled != length or length == buffer.keys.shape[2]:
            buffer = self._copy(np.s_[:], capacity=max(16, 2 * length))
        buffer.keys[:, :, length] = keys[:, :, 0]
        buffer.values[:, :, length] = values[:, :, 0]
        buffer.filled = length + 1
        return KeyValueCache(buffer, length + 1)

    def take(self, index: np.ndarray) -> KeyValueCache:
        """Rows ``index`` (int [B']) of this cache, in a buffer of their own."""
        return KeyValueCache(self._copy(index, capacity=self._buffer.keys.shape[2]), self.length)

    def _copy(self, rows, capacity: int) -> _Buffer:
        keys = self.keys[rows]
        shape = (keys.shape[0], keys.shape[1], capacity, keys.shape[3])
        new = _Buffer(np.empty(shape, keys.dtype), np.empty(shape, keys.dtype), self.length)
        new.keys[:, :, : self.length] = keys
        new.values[:, :, : self.length] = self.values[rows]
        return new
