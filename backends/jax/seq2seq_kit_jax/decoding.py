"""Incremental decoding for the core's greedy and beam search: ``encode``, ``step``,
``reorder`` and ``attention`` of each architecture, over padded device arrays.

Every state is an immutable tuple of device arrays plus host integers; ``step`` and
``reorder`` return new ones and leave theirs valid. The batch axis is padded to
``bucket(size)`` rows (:mod:`.padding`) so that beam widths and batch sizes share
compilations; only the first ``size`` rows are real. Compiled functions are built once per
architecture (:func:`functools.lru_cache` on the frozen spec) and shared by its models.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.spec import ModelSpec, Spec, TransformerSpec

from . import rnn, transformer
from .attention import Memory
from .padding import bucket, pad_source
from .rnn import LayerState
from .transformer import KeyValues

Params = dict[str, jax.Array]


@jax.jit
def _take_rows(tree, index):
    """Rows ``index`` of every array in ``tree`` (beam search's reorder)."""
    return jax.tree.map(lambda a: a[index], tree)


def _padded_index(index: np.ndarray) -> np.ndarray:
    padded = np.zeros(bucket(index.shape[0]), dtype=np.int32)
    padded[: index.shape[0]] = index
    return padded


def _padded_ids(prev_ids: np.ndarray, rows: int) -> np.ndarray:
    prev = np.zeros(rows, dtype=np.int32)
    prev[: prev_ids.shape[0]] = prev_ids
    return prev


def _attention(weights: jax.Array | None, size: int, width: int) -> np.ndarray | None:
    if weights is None:
        return None
    # rows past size are the batch bucket's padding
    return attention_at_width(np.asarray(weights)[:size], width)


class RnnState(NamedTuple):
    """An RNN decoder state.

    Attributes:
        layers: one state per decoder layer, bottom first: ``(h, c)`` for the LSTM, ``(h,)``
            for the GRU, [B', H] each.
        memory: the attention :class:`Memory` ([B', S', H], S' the padded source width),
            None without attention.
        weights: [B', S'] attention weights of the step that produced this state; None from
            ``encode`` or without attention.
        size: the real batch size B.
        source_width: S, the width of the ``src_ids`` encoded.
    """

    layers: tuple[LayerState, ...]
    memory: Memory | None
    weights: jax.Array | None
    size: int
    source_width: int


@functools.lru_cache(maxsize=64)
def _rnn_functions(spec: ModelSpec):
    def encode(params, src_ids, src_lengths):
        return rnn.encode(spec, params, src_ids, src_lengths)

    def step(params, prev_ids, layers, mem):
        logp, layers, probs = rnn.decode(spec, params, prev_ids[:, None], layers, mem)
        return logp[:, 0], layers, None if probs is None else probs[:, 0]

    return jax.jit(encode), jax.jit(step)


class RnnDecoder:
    """Decoding with an RNN (``ModelSpec``): the state is the decoder layers' recurrent
    state and the attention memory (:class:`RnnState`)."""

    def __init__(self, spec: ModelSpec):
        self._encode, self._step = _rnn_functions(spec)

    def encode(self, params: Params, src_ids: np.ndarray, src_lengths: np.ndarray) -> RnnState:
        """Per layer the encoder's state after ``src_lengths[b]`` tokens (zero for length 0;
        forward and reverse halves concatenated when bidirectional), and the memory."""
        src, lengths = pad_source(src_ids, src_lengths, bucket(src_ids.shape[0]))
        layers, mem = self._encode(params, src, lengths)
        return RnnState(layers, mem, None, src_ids.shape[0], src_ids.shape[1])

    def step(
        self, params: Params, prev_ids: np.ndarray, state: RnnState
    ) -> tuple[np.ndarray, RnnState]:
        prev = _padded_ids(prev_ids, state.layers[0][0].shape[0])
        logp, layers, weights = self._step(params, prev, state.layers, state.memory)
        out = np.array(logp[: state.size], dtype=np.float32)
        return out, state._replace(layers=layers, weights=weights)

    def reorder(self, state: RnnState, index: np.ndarray) -> RnnState:
        trees = (state.layers, state.memory, state.weights)
        layers, mem, weights = _take_rows(trees, _padded_index(index))
        return RnnState(layers, mem, weights, index.shape[0], state.source_width)

    def attention(self, state: RnnState) -> np.ndarray | None:
        return _attention(state.weights, state.size, state.source_width)


class TransformerState(NamedTuple):
    """A Transformer decoder state.

    Attributes:
        cache: per decoder layer, the self-attention keys and values of the positions
            before ``position``, [B', N, C, d] each; ``C`` (a bucket, grown by doubling)
            exceeds ``position`` once the next step has written it.
        cross: per decoder layer, the cross-attention keys and values of the encoder
            output, [B', N, S', d] each (S' the padded source width).
        src_mask: bool [B', S'], True at real source positions.
        weights: [B', S'] top-layer cross-attention averaged over heads, of the step that
            produced this state; None from ``encode``.
        position: the target position the next step decodes (0 after ``encode``).
        size: the real batch size B.
        source_width: S, the width of the ``src_ids`` encoded.
    """

    cache: tuple[KeyValues, ...]
    cross: tuple[KeyValues, ...]
    src_mask: jax.Array
    weights: jax.Array | None
    position: int
    size: int
    source_width: int


@functools.lru_cache(maxsize=64)
def _transformer_functions(spec: TransformerSpec):
    def encode(params, src_ids, src_lengths):
        memory, mask = transformer.encode(spec, params, src_ids, src_lengths)
        cache = transformer.empty_cache(spec, src_ids.shape[0], bucket(1))
        return cache, transformer.cross_keys(spec, params, memory), mask

    def step(params, prev_ids, position, cache, cross, mask):
        return transformer.step(spec, params, prev_ids, position, cache, cross, mask)

    return jax.jit(encode), jax.jit(step)


class TransformerDecoder:
    """Decoding with a Transformer (``TransformerSpec``): key/value caches
    (:class:`TransformerState`). The position is a traced argument and the cache capacity
    a bucket, so one compilation serves every step up to that capacity."""

    def __init__(self, spec: TransformerSpec):
        self._encode, self._step = _transformer_functions(spec)

    def encode(
        self, params: Params, src_ids: np.ndarray, src_lengths: np.ndarray
    ) -> TransformerState:
        src, lengths = pad_source(src_ids, src_lengths, bucket(src_ids.shape[0]))
        cache, cross, mask = self._encode(params, src, lengths)
        return TransformerState(cache, cross, mask, None, 0, src_ids.shape[0], src_ids.shape[1])

    def step(
        self, params: Params, prev_ids: np.ndarray, state: TransformerState
    ) -> tuple[np.ndarray, TransformerState]:
        cache = state.cache
        if cache[0][0].shape[2] <= state.position:
            cache = transformer.grow_cache(cache, bucket(state.position + 1))
        prev = _padded_ids(prev_ids, state.src_mask.shape[0])
        position = np.int32(state.position)
        logp, cache, weights = self._step(
            params, prev, position, cache, state.cross, state.src_mask
        )
        out = np.array(logp[: state.size], dtype=np.float32)
        return out, state._replace(cache=cache, weights=weights, position=state.position + 1)

    def reorder(self, state: TransformerState, index: np.ndarray) -> TransformerState:
        trees = (state.cache, state.cross, state.src_mask, state.weights)
        cache, cross, mask, weights = _take_rows(trees, _padded_index(index))
        return state._replace(
            cache=cache, cross=cross, src_mask=mask, weights=weights, size=index.shape[0]
        )

    def attention(self, state: TransformerState) -> np.ndarray | None:
        return _attention(state.weights, state.size, state.source_width)


def decoder(spec: Spec) -> RnnDecoder | TransformerDecoder:
    """The decoding adapter of ``spec``'s architecture."""
    if isinstance(spec, TransformerSpec):
        return TransformerDecoder(spec)
    return RnnDecoder(spec)
