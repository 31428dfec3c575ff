"""The numerics of :func:`seq2seq_kit.decoding.beam_search` (its docstring gives the
scheme and the stopping rules), step by step: the live beams, the best extensions of
each, and the finished hypotheses with their ranks. Also the GNMT length penalty, which
sampling's rankings share with it. Each step's log-probabilities go through the step
processing every search shares (:mod:`.logits_processing`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from .backend import Model
from .logits_processing import StepProcessor
from .vocab import Vocabulary

_NEG_INF = -np.inf

#: One finished hypothesis: its target ids (EOS excluded), its raw score (the sum of its
#: tokens' log-probabilities, EOS included when reached) and whether it was cut at
#: ``max_length``.
Output = tuple[tuple[int, ...], float, bool]

#: When a sentence's beam search ends before ``max_length`` (Hugging Face's
#: ``early_stopping`` values, or a patience): ``"never"`` the exact bound, False the bound
#: at the current length, True or a number a count of finished hypotheses (see
#: :func:`seq2seq_kit.decoding.beam_search`).
EarlyStopping = bool | Literal["never"] | float


def length_penalty(length: int | np.ndarray, alpha: float) -> float | np.ndarray:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14); beam
    search ranks finished hypotheses by ``score / length_penalty``. ``alpha = 0`` ranks by
    the raw sum of log-probabilities. ``|Y|`` counts the output tokens and EOS."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def best_outputs(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    width: int,
    n_best: int,
    alpha: float,
    process: StepProcessor | None = None,
    early_stopping: EarlyStopping = False,
) -> list[list[Output]]:
    """Beam search of ``width`` beams over int32 [B, S] sources: per sentence, up to
    ``n_best`` distinct outputs, best first, stopping by the rule ``early_stopping``. The
    options are the caller's to check: ``width >= n_best >= 1``, ``alpha >= 0``, which the
    stopping bounds assume, and a patience above 0. ``process`` is each step's processing
    of the log-probabilities (default: the specials masked)."""
    process = process or StepProcessor(vocab)
    n_sent = src_ids.shape[0]
    # the first step reads BOS alone, one decoder row per sentence; the rows become
    # `width` after it, each extending that one hypothesis
    state = model.encode(src_ids, src_lengths)
    beams = _Beams.start(n_sent, vocab.bos_id)
    finished = _Finished(n_sent, n_best, alpha)
    stop = _Stopping(early_stopping, width, max_length, alpha)
    for t in range(max_length + 1):
        log_probs, state = model.step(beams.tokens.reshape(-1), state)
        rows_per_sentence = beams.scores.shape[1]
        log_probs = process(log_probs, t, beams.history, np.repeat(beams.alive, rows_per_sentence))
        steps = log_probs.reshape(*beams.scores.shape, log_probs.shape[1])
        if t == max_length:
            _finish_at_max_length(beams, steps, vocab.eos_id, finished, t)
            break
        top = _best_extensions(beams.scores, steps, vocab.eos_id, 2 * width)
        # extensions ending in EOS among the `width` best finish; the others may live on
        rows, ranks = np.nonzero(top.is_eos[:, :width])
        if rows.size:
            parents = top.beam[rows, ranks]
            finished.add(beams, rows, parents, top.scores[rows, ranks], t, truncated=False)
        rows = beams.extend(top, width)
        done = stop.done(finished, beams, t)
        if done.any():
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            beams.keep(keep)
            rows = rows[keep]
        state = model.reorder(state, rows.reshape(-1).astype(np.int64))
    return finished.ranked(n_best)


class _Extensions(NamedTuple):
    """The k (2 x width) best extensions of each sentence's live hypotheses, best first
    (the lower flat index on ties), each [n_alive, k]."""

    scores: np.ndarray  # float64 raw scores of the extended hypotheses
    beam: np.ndarray  # the hypothesis extended (its column in the beam)
    token: np.ndarray  # the token added
    valid: np.ndarray  # a finite score: the extension of a live hypothesis
    is_eos: np.ndarray  # valid, and the token is EOS


@dataclass
class _Beams:
    """The live hypotheses of the sentences still searched, ``w`` rows per sentence (one,
    BOS, before the first step; ``width`` after it), in the decoder's row order."""

    alive: np.ndarray  # [n_alive]: the sentence of each row
    scores: np.ndarray  # float64 [n_alive, w] raw scores; -inf: no hypothesis there
    history: np.ndarray  # int32 [n_alive, w, t]: the tokens chosen so far
    tokens: np.ndarray  # int32 [n_alive, w]: each one's last token, the next input

    @classmethod
    def start(cls, n_sent: int, bos_id: int) -> _Beams:
        return cls(
            alive=np.arange(n_sent),
            scores=np.zeros((n_sent, 1)),
            history=np.zeros((n_sent, 1, 0), dtype=np.int32),
            tokens=np.full((n_sent, 1), bos_id, dtype=np.int32),
        )

    def extend(self, top: _Extensions, width: int) -> np.ndarray:
        """Keep, per sentence, the ``width`` best extensions not ending in EOS (-inf where
        fewer remain). Returns the decoder rows they extend, int [n_alive, width], for
        ``model.reorder``."""
        rows = np.arange(len(self.alive))[:, None] * self.scores.shape[1]
        live = top.valid & ~top.is_eos
        take = np.argsort(~live, axis=1, kind="stable")[:, :width]
        self.scores = np.where(
            np.take_along_axis(live, take, axis=1),
            np.take_along_axis(top.scores, take, axis=1),
            _NEG_INF,
        )
        parents = np.take_along_axis(top.beam, take, axis=1)
        self.tokens = np.take_along_axis(top.token, take, axis=1).astype(np.int32)
        kept = np.take_along_axis(self.history, parents[:, :, None], axis=1)
        self.history = np.concatenate([kept, self.tokens[:, :, None]], axis=2)
        return rows + parents

    def keep(self, rows: np.ndarray) -> None:
        """Go on with ``rows`` only (the sentences not done)."""
        self.alive, self.scores = self.alive[rows], self.scores[rows]
        self.history, self.tokens = self.history[rows], self.tokens[rows]


def _best_extensions(scores: np.ndarray, steps: np.ndarray, eos_id: int, k: int) -> _Extensions:
    """The ``k`` best extensions of hypotheses scoring ``scores`` (float64 [n_alive, w]) by
    their next token's masked log-probabilities ``steps`` (float32 [n_alive, w, V]): of the
    w x V sums ``score + log-probability`` of each sentence, the ``k`` highest, best first,
    the lower flat index ``beam * V + token`` first among equal sums.

    Selecting them from the w x V sums directly (a partition of float64 [n_alive, w x V])
    cost more than a decoder step of a small Transformer. A sum can rank among a sentence's
    ``k`` best only if its log-probability ranks among the ``k`` best of its own row (adding
    the row's score keeps the order), so each row is first cut to its likely candidates
    (:func:`_row_candidates`), and only those are summed and sorted."""
    n_alive, width, vocab_size = steps.shape
    wanted, k = k, min(k, width * vocab_size)
    rows, tokens, log_probs = _row_candidates(steps.reshape(n_alive * width, vocab_size), k)
    sentence, beam = np.divmod(rows, width)
    sums = scores[sentence, beam] + log_probs  # float64, as the hypotheses' scores
    flat = beam * vocab_size + tokens
    order = np.lexsort((flat, -sums, sentence))  # per sentence: best first, lower index on ties
    # every row holds at least min(k, V) candidates, so every sentence at least k
    counts = np.bincount(sentence, minlength=n_alive)
    first = np.cumsum(counts) - counts
    rank = np.arange(order.size) - first[sentence[order]]
    pick = order[rank < k].reshape(n_alive, k)
    top_scores, top_beam, top_tok = sums[pick], beam[pick], tokens[pick]
    if k < wanted:  # fewer sums than asked (a tiny vocabulary): none past them
        pad = ((0, 0), (0, wanted - k))
        top_scores = np.pad(top_scores, pad, constant_values=_NEG_INF)
        top_beam, top_tok = np.pad(top_beam, pad), np.pad(top_tok, pad)
    valid = np.isfinite(top_scores)
    return _Extensions(top_scores, top_beam, top_tok, valid, (top_tok == eos_id) & valid)


def _row_candidates(log_probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A few entries of each row of float32 [R, V] ``log_probs`` among which are the row's
    ``min(k, V)`` largest, all entries equal to the smallest of those included (so that
    ties are broken by index afterwards, not here): ``(rows, columns, values)``, each [C].

    The columns are cut into groups of equal width whose maxima are taken in one pass;
    the ``min(k, V)``-th largest maximum is a threshold at most the row's ``min(k, V)``-th
    largest entry (that many groups each hold an entry at or above it), and only the groups
    reaching it are read again, for their entries at or above it."""
    n_rows, vocab_size = log_probs.shape
    kk = min(k, vocab_size)
    # about 8 kk groups: few entries above the threshold, and few groups to read again
    size = max(1, vocab_size // (8 * kk))
    starts = np.arange(0, vocab_size, size)
    maxima = np.maximum.reduceat(log_probs, starts, axis=1)  # [R, G], G >= kk
    threshold = np.partition(maxima, maxima.shape[1] - kk, axis=1)[:, maxima.shape[1] - kk]
    # flat indices and flatnonzero: fancy 2-d indexing and 2-d nonzero cost several times more
    reached = np.flatnonzero(maxima >= threshold[:, None])
    group_rows, groups = np.divmod(reached, maxima.shape[1])
    columns = starts[groups][:, None] + np.arange(size)  # [P, size]
    inside = columns < vocab_size  # the last group may be narrower
    flat = group_rows[:, None] * vocab_size + np.minimum(columns, vocab_size - 1)
    values = np.take(log_probs, flat)
    at = np.flatnonzero(inside & (values >= threshold[group_rows][:, None]))
    rows, columns = np.divmod(flat.reshape(-1)[at], vocab_size)
    return rows, columns, values.reshape(-1)[at]


def _finish_at_max_length(
    beams: _Beams, steps: np.ndarray, eos_id: int, finished: _Finished, t: int
) -> None:
    """The last step: live hypotheses hold max_length tokens, and this step only looks for
    EOS, as greedy's last step does. One whose best next token is EOS has finished; any
    other is truncated (one entry per hypothesis: its tokens ended by an EOS the model did
    not prefer would rank a cut output below itself)."""
    live = np.isfinite(beams.scores)
    ends = live & (steps.argmax(axis=2) == eos_id)
    rows, parents = np.nonzero(ends)
    eos_scores = beams.scores[rows, parents] + steps[rows, parents, eos_id]
    finished.add(beams, rows, parents, eos_scores, t, truncated=False)
    rows, parents = np.nonzero(live & ~ends)
    finished.add(beams, rows, parents, beams.scores[rows, parents], t, truncated=True)


class _Finished:
    """Per sentence, the hypotheses that ended, how many, and the ranks of its ``n_best``
    best."""

    def __init__(self, n_sent: int, n_best: int, alpha: float):
        self.alpha = alpha
        # per sentence: finished ids -> (normalised score, raw score, truncated); first kept
        self.found: list[dict[tuple[int, ...], tuple[float, float, bool]]] = [
            {} for _ in range(n_sent)
        ]
        self.count = np.zeros(n_sent, dtype=np.int64)  # len(found[i]), as an array
        # per sentence: the ranks of its `n_best` best finished hypotheses, best first; the
        # last column is -inf until `n_best` have finished
        self.best_ranks = np.full((n_sent, n_best), _NEG_INF)

    def add(
        self,
        beams: _Beams,
        rows: np.ndarray,
        parents: np.ndarray,
        raw_scores: np.ndarray,
        length: int,
        truncated: bool,
    ) -> None:
        """Finish the hypotheses at (``rows``, ``parents``) of ``beams``, ``length`` tokens
        each, scoring ``raw_scores`` (EOS included unless ``truncated``)."""
        # every hypothesis finishing at one step has the same length: one penalty
        penalty = float(length_penalty(length + (0 if truncated else 1), self.alpha))
        sequences = beams.history[rows, parents].tolist()
        for sentence, ids, raw in zip(
            beams.alive[rows].tolist(), sequences, raw_scores.tolist(), strict=True
        ):
            bucket = self.found[sentence]
            key = tuple(ids)
            if key not in bucket:  # keep n-best lists free of duplicates
                rank = raw / penalty
                bucket[key] = (rank, raw, truncated)
                self.count[sentence] += 1
                kept = self.best_ranks[sentence]
                if rank > kept[-1]:
                    kept[-1] = rank
                    kept[::-1].sort()  # descending, in place

    def settled(self, beams: _Beams, penalty: float) -> np.ndarray:
        """bool [n_alive]: the sentences of ``beams`` whose best live hypothesis, its raw
        score divided by ``penalty``, cannot displace the worst of the ``n_best`` best
        finished ones (ties do not displace: the finished one ranks first). A -inf worst
        (fewer than ``n_best`` finished) never satisfies this while some hypothesis
        lives."""
        reachable = beams.scores.max(axis=1) / penalty
        return self.best_ranks[beams.alive, -1] >= reachable

    def ranked(self, n_best: int) -> list[list[Output]]:
        """Per sentence, its ``n_best`` best finished outputs, best first."""
        results = []
        for bucket in self.found:
            ranked = sorted(bucket.items(), key=lambda item: -item[1][0])[:n_best]
            results.append([(ids, raw, trunc) for ids, (_, raw, trunc) in ranked])
        return results


@dataclass(frozen=True)
class _Stopping:
    """The rule that ends a sentence's search before ``max_length`` (the docstring of
    :func:`seq2seq_kit.decoding.beam_search` gives each rule and its source)."""

    early_stopping: EarlyStopping
    width: int
    max_length: int
    alpha: float

    def done(self, finished: _Finished, beams: _Beams, t: int) -> np.ndarray:
        """bool [n_alive]: the sentences of ``beams`` done after step ``t`` (their live
        hypotheses hold ``t + 1`` tokens), or with no live hypothesis."""
        none_live = ~np.isfinite(beams.scores).any(axis=1)
        patience = patience_of(self.early_stopping)
        if patience is not None:
            # round half up, as CTranslate2's std::round of beam_size * patience
            needed = max(1, math.floor(self.width * patience + 0.5))
            return (finished.count[beams.alive] >= needed) | none_live
        # a raw score s <= 0 only falls as tokens are added, and length_penalty grows with
        # length for alpha >= 0: s / length_penalty(L) bounds every rank reachable with at
        # most L tokens and EOS. "never": L is the cap, max_length tokens plus EOS; False:
        # the length the live hypotheses would have if they ended at the next step.
        length = self.max_length + 1 if self.early_stopping == "never" else t + 2
        return finished.settled(beams, float(length_penalty(length, self.alpha))) | none_live


def patience_of(early_stopping: EarlyStopping) -> float | None:
    """The patience of a stopping rule that counts finished hypotheses (True: 1; a number:
    itself), else None (False, ``"never"``: a bound)."""
    if early_stopping is True:
        return 1.0
    if isinstance(early_stopping, (bool, str)):
        return None
    return float(early_stopping)
