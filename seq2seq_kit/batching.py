"""Batch planning: which pairs go together in one pass over the data, by sentences or by
padded tokens, shuffled or bucketed by length. The batch itself, :class:`Batch`, is the
contract's (:mod:`seq2seq_kit.batch`) and is re-exported here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from .batch import Batch, make_batch

__all__ = ["BATCH_TYPES", "Batch", "batches", "make_batch"]


#: Units of ``batch_size`` in :func:`batches`: pairs, or padded tokens per batch.
BATCH_TYPES = ("sentences", "tokens")


def batches(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    bucket: bool = False,
    batch_type: Literal["sentences", "tokens"] = "sentences",
) -> Iterator[Batch]:
    """Yield the :class:`Batch` es of one pass over the pairs, each pair in exactly one.

    Args:
        sources, targets: id lists (no BOS/EOS), one per pair, of equal count.
        batch_size: with ``batch_type="sentences"``, at most this many pairs per batch; with
            ``"tokens"``, at most this many padded tokens per batch (:func:`token_cost`), as
            fairseq's ``--max-tokens``: rows x the longest of the source and target widths.
            A pair costing more than ``batch_size`` on its own is a batch by itself, never
            dropped.
        rng: shuffles the pairs (and, with ``bucket``, the order of the batches); None keeps
            the order of the data. Every draw is made before the first batch is yielded, so
            a run resumed mid-epoch replays an epoch's batches from the rng state at its
            start.
        bucket: group pairs of similar length so that batches carry little padding, as
            torchtext's ``BucketIterator`` does: sorted by source+target length
            (``"sentences"``) or by :func:`token_cost` of the pair then source+target length
            (``"tokens"``), cut into batches, then the batches shuffled.
        batch_type: ``"sentences"`` or ``"tokens"``.

    Raises:
        ValueError: ``batch_size`` below 1, an unknown ``batch_type``, or unequal counts.
    """
    whole = shards(
        sources,
        targets,
        batch_size,
        rank=0,
        world_size=1,
        rng=rng,
        bucket=bucket,
        batch_type=batch_type,
    )
    for batch, _ in whole:
        yield batch


def shards(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int,
    *,
    rank: int,
    world_size: int,
    rng: np.random.Generator | None = None,
    bucket: bool = False,
    batch_type: Literal["sentences", "tokens"] = "sentences",
) -> Iterator[tuple[Batch | None, int]]:
    """This rank's share of each batch of one pass, for data-parallel training: the pass
    is planned as by :func:`batches` with ``batch_size * world_size`` (every rank draws the
    same plan from the same ``rng``), then each batch's pairs are dealt out in
    ``world_size`` contiguous, near-equal parts (:func:`numpy.array_split`), as
    ``DistributedSampler`` deals samples; part ``rank`` is this rank's.

    Yields:
        ``(batch, total_tokens)``: this rank's :class:`Batch`, or None when the batch held
        fewer pairs than there are ranks and none fell to it; and the target tokens (EOS
        included) of the whole batch over all ranks, which normalises the loss.

    Raises:
        ValueError: as :func:`batches`, or a rank outside ``0 .. world_size - 1``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_type not in BATCH_TYPES:
        raise ValueError(f"batch_type must be one of {', '.join(BATCH_TYPES)}, got {batch_type!r}")
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    plan = _plan(sources, targets, batch_size * world_size, rng, bucket, batch_type)
    if world_size == 1:
        for chunk in plan:
            batch = make_batch([sources[i] for i in chunk], [targets[i] for i in chunk])
            yield batch, batch.num_target_tokens
        return
    # the other ranks' rows count too: from the lengths (a corpus's index), not reading them
    target_lengths = row_lengths(targets)
    for chunk in plan:
        total = int(target_lengths[chunk].sum(dtype=np.int64)) + len(chunk)  # + EOS each
        part = np.array_split(chunk, world_size)[rank]
        if not len(part):
            yield None, total
            continue
        yield make_batch([sources[i] for i in part], [targets[i] for i in part]), total


def token_cost(source: Sequence[int], target: Sequence[int]) -> int:
    """Padded positions one pair needs per batch row: ``max(len(source), len(target) + 1)``,
    the widths of its ``src_ids`` and ``tgt_in`` rows (the target gains BOS / EOS). A batch
    of ``B`` pairs costs ``B`` x the largest cost among them: the size of the larger of its
    two padded id arrays, which bounds its padded target positions as well."""
    return max(len(source), len(target) + 1)


def row_lengths(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """[len(rows)] each row's length: int64, or the rows' own ``lengths`` array (int32)
    when they carry one (a corpus on disk: :class:`seq2seq_kit.corpus.TokenArrays`), so
    that no row is read."""
    lengths = getattr(rows, "lengths", None)
    if lengths is not None:
        return np.asarray(lengths)  # int32 there: half the memory of a copy in int64
    return np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))


def _plan(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int,
    rng: np.random.Generator | None,
    bucket: bool,
    batch_type: str,
) -> list[np.ndarray]:
    """The pair indices of each batch, in yield order; all of ``rng``'s draws happen here."""
    n = len(sources)
    order = np.arange(n) if rng is None else rng.permutation(n)
    if bucket or batch_type == "tokens":
        source_lengths, target_lengths = row_lengths(sources)[order], row_lengths(targets)[order]
    if bucket:
        totals = source_lengths + target_lengths
    if batch_type == "tokens":
        costs = np.maximum(source_lengths, target_lengths + 1)  # token_cost of each pair
        if bucket:
            # lexsort is stable: equal lengths keep the shuffled order, so each epoch's
            # batches hold different pairs
            by_length = np.lexsort((totals, costs))
            order, costs = order[by_length], costs[by_length]
        chunks = [order[a:b] for a, b in _token_bounds(costs, batch_size)]
    else:
        if bucket:
            order = order[np.argsort(totals, kind="stable")]
        chunks = [order[a : a + batch_size] for a in range(0, n, batch_size)]
    if bucket and rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def _token_bounds(costs: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive runs of ``costs`` whose rows x largest cost stays
    within ``budget``, filled greedily; a single pair over the budget is a run of its own."""
    start, widest = 0, 0
    for i, cost in enumerate(costs.tolist()):
        wider = max(widest, cost)
        if i > start and (i - start + 1) * wider > budget:
            yield start, i
            start, wider = i, cost
        widest = wider
    if len(costs):
        yield start, len(costs)
