"""Vectorization: id sequences -> padded int32 batches with the teacher-forcing shift.

For a target ``y_1 .. y_n`` the decoder reads ``BOS y_1 .. y_n`` and is trained to emit
``y_1 .. y_n EOS`` (teacher forcing, Williams & Zipser 1989). Batches hold ids, never
one-hot arrays: memory grows with tokens, not tokens x vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import BOS, EOS, pad


@dataclass(frozen=True)
class Batch:
    """One padded batch; every array is C-contiguous.

    Attributes:
        src_ids: int32 [B, S] source ids, PAD after ``src_lengths[b]``.
        src_lengths: int32 [B] number of real source tokens (0 allowed).
        tgt_in: int32 [B, T] decoder inputs, ``BOS y_1 .. y_n`` then PAD.
        tgt_out: int32 [B, T] decoder targets, ``y_1 .. y_n EOS`` then PAD.
        tgt_lengths: int32 [B] ``n + 1``: real positions of ``tgt_in`` / ``tgt_out``.
        tgt_mask: float32 [B, T] 1.0 on real target positions, 0.0 on padding.
    """

    src_ids: np.ndarray
    src_lengths: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_lengths: np.ndarray
    tgt_mask: np.ndarray

    def __len__(self) -> int:
        return self.src_ids.shape[0]

    @property
    def num_target_tokens(self) -> int:
        return int(self.tgt_lengths.sum())


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> Batch:
    """Pad a list of source and target id lists (no BOS/EOS yet) into a :class:`Batch`."""
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    tgt_in = pad([[BOS, *t] for t in targets])
    tgt_out = pad([[*t, EOS] for t in targets])
    tgt_lengths = np.array([len(t) + 1 for t in targets], dtype=np.int32)
    mask = (np.arange(tgt_in.shape[1])[None, :] < tgt_lengths[:, None]).astype(np.float32)
    return Batch(
        src_ids=pad(sources),
        src_lengths=np.array([len(s) for s in sources], dtype=np.int32),
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        tgt_lengths=tgt_lengths,
        tgt_mask=mask,
    )


def batches(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    bucket: bool = False,
) -> Iterator[Batch]:
    """Yield batches of at most ``batch_size`` pairs.

    ``rng`` shuffles the pairs (and, with ``bucket``, the order of the batches); ``bucket``
    groups pairs of similar source+target length so that batches carry little padding,
    as torchtext's ``BucketIterator`` does.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.arange(len(sources)) if rng is None else rng.permutation(len(sources))
    if bucket:
        lengths = np.array([len(sources[i]) + len(targets[i]) for i in order])
        order = order[np.argsort(lengths, kind="stable")]
    starts = list(range(0, len(order), batch_size))
    if bucket and rng is not None:
        starts = [starts[i] for i in rng.permutation(len(starts))]
    for start in starts:
        chunk = order[start : start + batch_size]
        yield make_batch([sources[i] for i in chunk], [targets[i] for i in chunk])
