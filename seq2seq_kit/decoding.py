"""The decoder loop: batched greedy decoding and batched beam search over any backend.

Both drive a model only through ``encode``, ``step`` and ``reorder``. Targets PAD, BOS and
UNK are masked out of every step's log-probabilities, so a hypothesis never contains a
special; EOS ends it. A hypothesis holds at most ``max_length`` tokens before its EOS;
one that reached that many without the model choosing EOS is flagged ``truncated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .backend import Model
from .beam import best_outputs, length_penalty, mask_specials
from .vocab import PAD, Vocabulary

__all__ = [
    "Hypothesis",
    "beam_search",
    "forced_attention",
    "greedy",
    "length_penalty",
    "search",
]


@dataclass(frozen=True)
class Hypothesis:
    """One decoded output.

    Attributes:
        text: detokenized output, specials removed.
        ids: target ids, EOS excluded.
        score: sum of the log-probabilities (nats) of every chosen token, EOS included
            when it was reached.
        truncated: the output stopped at ``max_length`` without the model emitting EOS.
        attention: float32 [len(ids) + 1, S] attention weights when asked for, else None.
    """

    text: str
    ids: tuple[int, ...]
    score: float
    truncated: bool
    attention: np.ndarray | None = field(default=None, compare=False, repr=False)


def greedy(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    attention: bool = False,
) -> list[Hypothesis]:
    """Batched greedy decoding of int32 [B, S] sources; one hypothesis per row.

    Rows that finish leave the batch (``model.reorder``) so long outputs do not pay for
    short ones. With ``attention``, each hypothesis carries the model's attention weights,
    float32 [len(ids) + 1, S] (one row per output token and EOS; zeros without attention).
    """
    batch = src_ids.shape[0]
    state = model.encode(src_ids, src_lengths)
    out = np.full((batch, max_length + 1), vocab.pad_id, dtype=np.int32)
    token_scores = np.zeros((batch, max_length + 1), dtype=np.float64)
    weights = np.zeros((batch, max_length + 1, src_ids.shape[1]), np.float32) if attention else None
    active = np.arange(batch)
    prev = np.full(batch, vocab.bos_id, dtype=np.int32)
    for t in range(max_length + 1):
        log_probs, state = model.step(prev, state)
        log_probs = mask_specials(log_probs, vocab)
        nxt = log_probs.argmax(axis=1).astype(np.int32)
        token_scores[active, t] = log_probs[np.arange(len(active)), nxt]
        out[active, t] = nxt
        if weights is not None:
            step_weights = model.attention(state)
            if step_weights is not None:
                weights[active, t] = step_weights
        finished = nxt == vocab.eos_id
        if t == max_length:
            break
        if finished.any():
            keep = np.flatnonzero(~finished)
            if keep.size == 0:
                break
            active, nxt = active[keep], nxt[keep]
            state = model.reorder(state, keep.astype(np.int64))
        prev = nxt
    hyps = []
    for row in range(batch):
        ends = np.flatnonzero(out[row] == vocab.eos_id)
        if ends.size:
            ids, score = out[row, : ends[0]], token_scores[row, : ends[0] + 1].sum()
        else:
            # The last step only looked for EOS; its token is not part of the output.
            ids, score = out[row, :max_length], token_scores[row, :max_length].sum()
        hyp = _hypothesis(ids, score, not ends.size, vocab)
        if weights is not None:
            hyp = replace(hyp, attention=weights[row, : len(ids) + 1])
        hyps.append(hyp)
    return hyps


def beam_search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int = 1,
    alpha: float = 0.0,
) -> list[list[Hypothesis]]:
    """Batched beam search: ``beam`` hypotheses for each of B sentences advance together as
    B x beam rows of one ``step`` call.

    At each step every live hypothesis is extended by every token; of the 2 x beam best
    extensions of a sentence, those ending in EOS within the first ``beam`` are finished,
    and the best ``beam`` others stay live (the scheme of fairseq's ``SequenceGenerator``).
    Hypotheses are ranked by ``score / length_penalty(len, alpha)``.

    A sentence is done when it has at least ``beam`` finished hypotheses and no live one
    can still rank above the worst of its ``beam`` best finished ones, or at
    ``max_length``, when each live hypothesis whose best next token is EOS finishes and
    the others are added as truncated (greedy's last step). The bound is exact:
    a live hypothesis's raw score ``s <= 0`` only decreases as tokens are added, and any
    output it leads to holds at most ``max_length`` tokens plus EOS, so its best possible
    rank is ``s / length_penalty(max_length + 1, alpha)`` (``s`` itself when
    ``alpha = 0``). fairseq stops at ``beam`` finished hypotheses, which with a small
    vocabulary can end a sentence on low-probability early EOS candidates before the
    likely output finishes; Hugging Face's ``BeamHypotheses.is_done`` (early_stopping
    False) bounds with the current length instead, which undercounts the growth of the
    penalty for ``alpha > 0``. With ``beam = 1`` and ``alpha = 0`` the search is greedy
    decoding.

    Returns, per sentence, up to ``n_best`` distinct hypotheses ordered by rank, best
    first. ``n_best`` above ``beam`` widens the beam to ``n_best``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, or ``alpha`` negative (the stopping
            bound assumes a penalty that grows with length).
    """
    _check_search_options("beam_search", beam, n_best, alpha)
    return _beam_search(model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha)


def _beam_search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int,
    alpha: float,
) -> list[list[Hypothesis]]:
    """:func:`beam_search` of options already checked (the numerics: :mod:`.beam`)."""
    width = max(beam, n_best)
    found = best_outputs(model, src_ids, src_lengths, vocab, max_length, width, n_best, alpha)
    return [[_hypothesis(ids, raw, trunc, vocab) for ids, raw, trunc in outs] for outs in found]


def forced_attention(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    hypotheses: Sequence[Hypothesis],
    bos_id: int,
) -> list[np.ndarray]:
    """The model's attention weights while it reads each hypothesis (teacher forcing): row
    ``i`` of int32 [B, S] ``src_ids`` is the source of ``hypotheses[i]``; the decoder is fed
    BOS then the hypothesis's ids, one ``step`` each, and ``model.attention(state)`` is
    kept after every step. This gives the weights of any hypothesis, a beam search's n-best
    included, where :func:`greedy` gives them only for its own output.

    Returns, per hypothesis, float32 [len(ids) + 1, S]: one row per output token and one
    for its EOS (the step that chose it), or [len(ids), S] for a truncated hypothesis
    (no EOS was chosen). Rows are zeros for a model without attention. For a greedy
    hypothesis these are the rows :func:`greedy` returns with ``attention=True``.
    """
    rows = [len(h.ids) + (0 if h.truncated else 1) for h in hypotheses]
    batch, width = src_ids.shape
    out = [np.zeros((n, width), dtype=np.float32) for n in rows]
    if batch == 0 or max(rows, default=0) == 0:
        return out
    # every row steps max(rows) times; a row's steps past its own end are discarded (their
    # input is PAD, a valid id), which keeps one batch with no reordering
    fed = np.full((batch, max(rows)), PAD, dtype=np.int32)
    for i, h in enumerate(hypotheses):
        seq = (bos_id, *h.ids)[: rows[i]]
        fed[i, : len(seq)] = seq
    state = model.encode(src_ids, src_lengths)
    for t in range(fed.shape[1]):
        _, state = model.step(fed[:, t], state)
        weights = model.attention(state)
        if weights is None:
            continue
        for i, n in enumerate(rows):
            if t < n:
                out[i][t] = weights[i]
    return out


def _check_search_options(caller: str, beam: int, n_best: int, alpha: float) -> None:
    if beam < 1 or n_best < 1:
        raise ValueError(f"beam and n_best must be >= 1, got beam={beam}, n_best={n_best}")
    if not alpha >= 0:
        raise ValueError(f"{caller}: alpha (length penalty) must be >= 0, got {alpha}")


def _hypothesis(ids, score: float, truncated: bool, vocab: Vocabulary) -> Hypothesis:
    ids = tuple(int(i) for i in ids)
    return Hypothesis(vocab.decode(ids), ids, float(score), truncated)


def search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int = 1,
    n_best: int = 1,
    alpha: float = 0.0,
) -> list[list[Hypothesis]]:
    """Decode with the model's own search (a backend declaring the ``search`` capability,
    :class:`seq2seq_kit.backend.SearchModel`): greedy for ``beam == n_best == 1``, else
    beam search, with the semantics of :func:`greedy` and :func:`beam_search`. Fills each
    hypothesis's text from ``vocab``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, or ``alpha`` negative.
    """
    _check_search_options("search", beam, n_best, alpha)
    found = model.search(
        src_ids,
        src_lengths,
        max_length=max_length,
        beam=beam,
        n_best=n_best,
        length_penalty=alpha,
    )
    return [[_hypothesis(h.ids, h.score, h.truncated, vocab) for h in hyps] for hyps in found]
