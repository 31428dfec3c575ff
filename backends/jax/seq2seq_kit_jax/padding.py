"""Padding batches up to compile buckets, so XLA compiles once per bucket, not per shape.

The batch, source and target axes are padded up to powers of two, at least
:data:`MIN_BUCKET`: extra rows have source length 0 and target mask 0, extra positions are
masked, so padding changes no result. The source axis is first cut to the longest real
source, the target axis (for the loss) to the last position with a nonzero mask.
"""

from __future__ import annotations

import numpy as np

from seq2seq_kit.batching import Batch

from .loss import Arrays

#: Smallest padded size of the batch and time axes: small batches (the seed task trains
#: on pairs) then share one compilation; the padding costs little next to dispatch.
MIN_BUCKET = 8


def bucket(n: int) -> int:
    """The padded size of an axis of ``n``: the smallest power of two >= ``n``, at least
    :data:`MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(0, n - 1).bit_length())


def pad_source(
    src_ids: np.ndarray, src_lengths: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """int32 [B, S] sources cut to the longest real one, then padded to ``rows`` x a
    bucketed width (padded rows have length 0; the fill id is masked, so any id serves).
    Returns ``(ids [rows, S'], lengths [rows])``."""
    size = src_ids.shape[0]
    longest = int(src_lengths.max()) if size else 0
    src = np.zeros((rows, bucket(longest)), dtype=np.int32)
    src[:size, :longest] = src_ids[:, :longest]
    lengths = np.zeros(rows, dtype=np.int32)
    lengths[:size] = src_lengths
    return src, lengths


def pad_batch(batch: Batch, trim_target: bool) -> Arrays:
    """``batch`` padded to bucket sizes. With ``trim_target`` the target axis is first cut
    after its last position with a nonzero mask (the decoder is causal: later positions
    change neither loss nor gradient)."""
    size, steps = batch.tgt_in.shape
    if trim_target:
        used = np.flatnonzero(batch.tgt_mask.any(axis=0))
        steps = int(used[-1]) + 1 if used.size else 0
    rows, width = bucket(size), bucket(steps)
    src, lengths = pad_source(batch.src_ids, batch.src_lengths, rows)
    tgt_in = np.zeros((rows, width), dtype=np.int32)
    tgt_out = np.zeros((rows, width), dtype=np.int32)
    mask = np.zeros((rows, width), dtype=np.float32)
    tgt_in[:size, :steps] = batch.tgt_in[:, :steps]
    tgt_out[:size, :steps] = batch.tgt_out[:, :steps]
    mask[:size, :steps] = batch.tgt_mask[:, :steps]
    return Arrays(src, lengths, tgt_in, tgt_out, mask)
