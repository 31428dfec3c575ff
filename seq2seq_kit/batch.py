"""The batch that crosses the line between the core and a backend, and the special ids.

These are the contract's data: a backend reads :class:`Batch` es and emits ids in which
``PAD``, ``BOS``, ``EOS`` and ``UNK`` have fixed values, so this module depends on nothing
else of the core. Batch planning (which pairs go together) is :mod:`seq2seq_kit.batching`'s,
vocabularies are :mod:`seq2seq_kit.vocab`'s.

For a target ``y_1 .. y_n`` the decoder reads ``BOS y_1 .. y_n`` and is trained to emit
``y_1 .. y_n EOS`` (teacher forcing, Williams & Zipser 1989). Batches hold ids, never
one-hot arrays: memory grows with tokens, not tokens x vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The special ids, the same in every vocabulary, and their pieces.
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Right-pad id lists with PAD into an int32 array of shape [len(sequences), length]."""
    length = max((len(s) for s in sequences), default=0) if length is None else length
    out = np.full((len(sequences), length), PAD, dtype=np.int32)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out


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
