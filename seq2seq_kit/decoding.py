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
from .vocab import PAD, Vocabulary

_NEG_INF = -np.inf


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


def length_penalty(length: int | np.ndarray, alpha: float) -> float | np.ndarray:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14); beam
    search ranks finished hypotheses by ``score / length_penalty``. ``alpha = 0`` ranks by
    the raw sum of log-probabilities. ``|Y|`` counts the output tokens and EOS."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def _mask_specials(log_probs: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    log_probs = np.array(log_probs, dtype=np.float32, copy=True)
    log_probs[:, [vocab.pad_id, vocab.bos_id, vocab.unk_id]] = _NEG_INF
    return log_probs


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
        log_probs = _mask_specials(log_probs, vocab)
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
    width = max(beam, n_best)
    n_sent = src_ids.shape[0]
    state = model.encode(src_ids, src_lengths)
    state = model.reorder(state, np.repeat(np.arange(n_sent), width).astype(np.int64))
    scores = np.full((n_sent, width), _NEG_INF)
    scores[:, 0] = 0.0  # every beam starts as the same BOS; keep one copy live
    history = np.zeros((n_sent, width, 0), dtype=np.int32)
    prev = np.full(n_sent * width, vocab.bos_id, dtype=np.int32)
    alive = np.arange(n_sent)  # sentence ids of the rows still searched
    # per sentence: finished ids -> (normalised score, raw score, truncated); first kept
    finished: list[dict[tuple[int, ...], tuple[float, float, bool]]] = [{} for _ in range(n_sent)]
    # per sentence: the ranks of its `width` best finished hypotheses, best first; the last
    # column is -inf until `width` have finished
    best_ranks = np.full((n_sent, width), _NEG_INF)
    # No output holds more than max_length tokens plus EOS, and length_penalty grows with
    # length for alpha >= 0 (checked above): dividing a raw score s <= 0 by this bounds
    # every rank that a live hypothesis scoring s can still reach.
    max_penalty = float(length_penalty(max_length + 1, alpha))

    def finish(rows, beams, raw_scores, length: int, truncated: bool) -> None:
        # every hypothesis finishing at one step has the same length: one penalty
        penalty = float(length_penalty(length + (0 if truncated else 1), alpha))
        sequences = history[rows, beams].tolist()
        for sentence, ids, raw in zip(
            alive[rows].tolist(), sequences, raw_scores.tolist(), strict=True
        ):
            bucket = finished[sentence]
            key = tuple(ids)
            if key not in bucket:  # keep n-best lists free of duplicates
                rank = raw / penalty
                bucket[key] = (rank, raw, truncated)
                kept = best_ranks[sentence]
                if rank > kept[-1]:
                    kept[-1] = rank
                    kept[::-1].sort()  # descending, in place

    for t in range(max_length + 1):
        log_probs, state = model.step(prev, state)
        log_probs = _mask_specials(log_probs, vocab)
        vocab_size = log_probs.shape[1]
        n_alive = len(alive)
        cand = scores[:, :, None] + log_probs.reshape(n_alive, width, vocab_size)
        flat = cand.reshape(n_alive, width * vocab_size)
        k = min(2 * width, flat.shape[1])
        top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(flat, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # best first, lower index on ties
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        top_beam, top_tok = np.divmod(top, vocab_size)
        valid = np.isfinite(top_scores)
        is_eos = (top_tok == vocab.eos_id) & valid

        if t == max_length:
            # Live hypotheses hold max_length tokens: this step only looks for EOS, as
            # greedy's last step does. One whose best next token is EOS has finished; any
            # other is truncated (one entry per hypothesis: its tokens ended by an EOS the
            # model did not prefer would rank a cut output below itself).
            steps = log_probs.reshape(n_alive, width, vocab_size)
            live = np.isfinite(scores)
            ends = live & (steps.argmax(axis=2) == vocab.eos_id)
            rows, beams = np.nonzero(ends)
            eos_scores = scores[rows, beams] + steps[rows, beams, vocab.eos_id]
            finish(rows, beams, eos_scores, t, truncated=False)
            rows, beams = np.nonzero(live & ~ends)
            finish(rows, beams, scores[rows, beams], t, truncated=True)
            break

        rows, ranks = np.nonzero(is_eos[:, :width])
        if rows.size:
            finish(rows, top_beam[rows, ranks], top_scores[rows, ranks], t, truncated=False)

        live = valid & ~is_eos
        take = np.argsort(~live, axis=1, kind="stable")[:, :width]
        new_scores = np.where(
            np.take_along_axis(live, take, axis=1),
            np.take_along_axis(top_scores, take, axis=1),
            _NEG_INF,
        )
        new_beam = np.take_along_axis(top_beam, take, axis=1)
        new_tok = np.take_along_axis(top_tok, take, axis=1).astype(np.int32)
        history = np.concatenate(
            [np.take_along_axis(history, new_beam[:, :, None], axis=1), new_tok[:, :, None]],
            axis=2,
        )
        scores = new_scores
        # Done when no live hypothesis can still displace the worst of the `width` best
        # finished ones (ties do not displace: the finished one ranks first). A -inf worst
        # (fewer than `width` finished) never satisfies this while some hypothesis lives.
        reachable = scores.max(axis=1) / max_penalty
        done = (best_ranks[alive, -1] >= reachable) | ~np.isfinite(scores).any(axis=1)
        rows = (np.arange(n_alive)[:, None] * width + new_beam).reshape(-1)
        if done.any():
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            alive, scores, history = alive[keep], scores[keep], history[keep]
            new_tok = new_tok[keep]
            rows = rows.reshape(n_alive, width)[keep].reshape(-1)
        state = model.reorder(state, rows.astype(np.int64))
        prev = new_tok.reshape(-1)

    results = []
    for bucket in finished:
        ranked = sorted(bucket.items(), key=lambda item: -item[1][0])[:n_best]
        results.append([_hypothesis(ids, raw, trunc, vocab) for ids, (_, raw, trunc) in ranked])
    return results


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
