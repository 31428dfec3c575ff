"""The searches :mod:`seq2seq_kit.decoding` dispatches to: batched greedy decoding,
sampling, batched beam search and an engine's own search, each over source ids and with
options already checked, and the attention of a given output (forced decoding).

Greedy decoding, sampling and beam search drive a model only through ``encode``, ``step``
and ``reorder``. Each step's log-probabilities go through one processing
(:class:`~seq2seq_kit.logits_processing.StepProcessor`), whatever the search: targets PAD,
BOS and UNK are masked out, so a hypothesis never contains a special (UNK is let through
for ``replace_unk``); the output controls
(:class:`~seq2seq_kit.logits_processing.OutputControls`: ``min_length``,
``no_repeat_ngram_size``, banned tokens) rule tokens out; a target prefix is forced. EOS
ends a hypothesis. A hypothesis holds at most ``max_length`` tokens before its EOS (its
prefix's included); one that reached that many without the model choosing EOS is flagged
``truncated``. Beam search with lexical constraints (target phrases every output must hold)
runs :mod:`.constrained_beam`; an output the length cap kept from holding them is flagged
``constraints_met=False``.

Scores are the model's own: the sum of the log-probabilities of a hypothesis's tokens,
a target prefix's included, whatever the search (a temperature, top-k or top-p shapes only
what sampling draws from, and a masked token leaves the others' log-probabilities as they
were).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .backend import Model
from .beam import EarlyStopping, best_outputs, length_penalty
from .constrained_beam import constrained_outputs
from .logits_processing import NO_CONTROLS, OutputControls, StepProcessor
from .sampling import Sampling, draw, fresh_seed, output_uniforms, sampling_weights
from .vocab import PAD, Vocabulary

if TYPE_CHECKING:
    pass

SEARCH_OPTION_CAPABILITIES = {
    "sampling": "sampling",
    "prefix": "prefix",
    "min_length": "min_length",
    "no_repeat_ngram_size": "no_repeat_ngram",
    "banned_tokens": "banned_tokens",
    "constraints": "constraints",
}


@dataclass(frozen=True)
class Hypothesis:
    """One decoded output.

    Attributes:
        text: detokenized output, specials removed.
        ids: target ids, EOS excluded.
        score: sum of the model's log-probabilities (nats) of every token of the output,
            a forced target prefix's included, and of EOS when it was reached.
        truncated: the output stopped at ``max_length`` without the model emitting EOS.
        attention: float32 [len(ids) + 1, S] attention weights when asked for, else None.
        alignment: with ``[decode] alignments``, one ``(i, j)`` pair per output token ``j``
            (0-based, EOS excluded): ``i`` is the source position (0-based, in the model's
            source tokens) it attends to most (:mod:`seq2seq_kit.alignment`); else None.
        constraints_met: the output holds every lexical constraint of its input (True
            without constraints); False only for an output that could not hold them all
            within ``max_length`` (or under the output controls).
    """

    text: str
    ids: tuple[int, ...]
    score: float
    truncated: bool
    attention: np.ndarray | None = field(default=None, compare=False, repr=False)
    constraints_met: bool = True
    alignment: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)


def greedy(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    attention: bool = False,
    *,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[Hypothesis]:
    """Batched greedy decoding of int32 [B, S] sources; one hypothesis per row.

    Rows that finish leave the batch (``model.reorder``) so long outputs do not pay for
    short ones. With ``attention``, each hypothesis carries the model's attention weights,
    float32 [len(ids) + 1, S] (one row per output token and EOS; zeros without attention).
    ``controls`` and ``prefixes`` (per row, the target ids its output starts with, checked
    by :func:`encode_prefixes`) act on every step (:mod:`.logits_processing`).
    """
    process = StepProcessor(vocab, controls, prefixes)
    return _step_by_step(
        model, src_ids, src_lengths, vocab, max_length, process, _best_token, attention
    )


def _best_token(log_probs: np.ndarray, rows: np.ndarray, t: int) -> np.ndarray:
    """Greedy decoding's choice: each row's most likely token (the lowest id on ties)."""
    return log_probs.argmax(axis=1).astype(np.int32)


def _step_by_step(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    process: StepProcessor,
    choose,
    attention: bool = False,
) -> list[Hypothesis]:
    """One hypothesis per row of int32 [B, S] sources, its next token at each step ``t``
    ``choose(log_probs, rows, t)`` (int32 [R]) of the processed log-probabilities float32
    [R, V] of the rows still decoding (``rows``: their indices in the batch): greedy
    decoding and sampling. Scores sum the processed log-probabilities of the chosen tokens,
    which are the model's own. The last step (``t == max_length``) only ends a hypothesis
    whose chosen token is EOS; any other is truncated."""
    batch = src_ids.shape[0]
    state = model.encode(src_ids, src_lengths)
    out = np.full((batch, max_length + 1), vocab.pad_id, dtype=np.int32)
    token_scores = np.zeros((batch, max_length + 1), dtype=np.float64)
    weights = np.zeros((batch, max_length + 1, src_ids.shape[1]), np.float32) if attention else None
    active = np.arange(batch)
    prev = np.full(batch, vocab.bos_id, dtype=np.int32)
    for t in range(max_length + 1):
        log_probs, state = model.step(prev, state)
        history = out[active, :t] if process.needs_history else None
        log_probs = process(log_probs, t, history, active)
        nxt = choose(log_probs, active, t)
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


def sample(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    sampling: Sampling,
    *,
    alpha: float = 0.0,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Sampling: for each row of int32 [B, S] sources, ``sampling.num_samples`` outputs,
    each token drawn from the model's distribution at that step (after ``controls`` and
    ``prefixes``, as in :func:`greedy`) shaped by ``sampling``'s temperature, top-k and
    top-p (:mod:`.sampling`). All B x ``num_samples`` outputs decode as rows of one batch.

    An output's random numbers come from ``sampling.seed`` (None: fresh entropy), its
    sample number and its input, so a seed reproduces every output whatever the batch it
    is decoded in. Scores are the model's log-probabilities (those of :func:`greedy`: a
    temperature, top-k or top-p shapes the draws, not the scores). Towards temperature 0,
    with ``top_k = 1`` or towards ``top_p = 0`` every output is greedy decoding's.

    Returns, per row, its samples ranked as an n-best list (by ``score /
    length_penalty(len, alpha)``, best first; equal ranks in the order drawn); samples that
    came out the same are each listed.

    Raises:
        ValueError: ``num_samples`` below 1, or ``alpha`` negative.
    """
    if sampling.num_samples < 1:
        raise ValueError(f"sample: num_samples must be >= 1, got {sampling.num_samples}")
    _check_search_options("sample", 1, 1, alpha)
    return sample_checked(
        model, src_ids, src_lengths, vocab, max_length, sampling, alpha, controls, prefixes
    )


def sample_checked(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    sampling: Sampling,
    alpha: float,
    controls: OutputControls,
    prefixes: Sequence[Sequence[int]] | None,
) -> list[list[Hypothesis]]:
    """:func:`sample` of options already checked."""
    n = sampling.num_samples
    batch = src_ids.shape[0]
    rows = np.repeat(np.arange(batch), n)  # every sample of a source side by side
    sources = [tuple(src_ids[i, : src_lengths[i]].tolist()) for i in range(batch)]
    row_prefixes = [tuple(p) for p in prefixes] if prefixes is not None else [()] * batch
    seed = fresh_seed() if sampling.seed is None else sampling.seed
    uniforms = output_uniforms(
        seed,
        [sources[i] for i in rows],
        [row_prefixes[i] for i in rows],
        np.tile(np.arange(n), batch).tolist(),
        max_length + 1,
    )

    def choose(log_probs: np.ndarray, active: np.ndarray, t: int) -> np.ndarray:
        return draw(sampling_weights(log_probs, sampling), uniforms[active, t])

    process = StepProcessor(
        vocab, controls, None if prefixes is None else [row_prefixes[i] for i in rows]
    )
    drawn = _step_by_step(
        model, src_ids[rows], src_lengths[rows], vocab, max_length, process, choose
    )
    results = []
    for i in range(batch):
        hyps = drawn[i * n : (i + 1) * n]
        ranks = [
            h.score / float(length_penalty(len(h.ids) + (not h.truncated), alpha)) for h in hyps
        ]
        order = sorted(range(n), key=lambda k: -ranks[k])  # stable: draw order on ties
        results.append([hyps[k] for k in order])
    return results


def beam_search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int = 1,
    alpha: float = 0.0,
    early_stopping: EarlyStopping = False,
    *,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search: ``beam`` hypotheses for each of B sentences advance together as
    B x beam rows of one ``step`` call (one row per sentence at the first step, which
    reads BOS alone).

    At each step every live hypothesis is extended by every token; of the 2 x beam best
    extensions of a sentence, those ending in EOS within the first ``beam`` are finished,
    and the best ``beam`` others stay live (the scheme of fairseq's ``SequenceGenerator``).
    Hypotheses are ranked by ``score / length_penalty(|Y|, alpha)``, ``|Y|`` counting EOS.

    A sentence is done at ``max_length``, when each live hypothesis whose best next token
    is EOS finishes and the others are added as truncated (greedy's last step), when no
    hypothesis of it lives, or earlier by the rule ``early_stopping`` (Hugging Face's
    ``early_stopping`` of ``generate``, ``BeamHypotheses.is_done``):

    - ``"never"``: exact. Done once no live hypothesis can still rank above the worst of
      the ``n_best`` best finished ones: a live hypothesis's raw score ``s <= 0`` only
      decreases as tokens are added, and any output it leads to holds at most
      ``max_length`` tokens plus EOS, so its best possible rank is
      ``s / length_penalty(max_length + 1, alpha)``. The outputs are those of a search
      that went on to ``max_length``. With ``alpha > 0`` that bound is far above the
      ranks live hypotheses go on to reach, and the search goes on long after its best
      output has finished.
    - False (the default): the same test with the bound at the current length,
      ``s / length_penalty(t + 1, alpha)`` for live hypotheses of ``t`` tokens (their rank
      if they ended at the next step, EOS costing nothing): as exact for ``alpha = 0``,
      where the two bounds are one; for ``alpha > 0`` it may stop before a longer
      hypothesis that would rank first has finished. Hugging Face waits for ``num_beams``
      finished hypotheses before testing its bound; the test here needs the ``n_best``
      returned, as the exact rule does.
    - True: done once ``beam`` distinct hypotheses have finished (Hugging Face's True,
      fairseq's rule). A number ``patience`` above 0: once ``round(beam * patience)`` have
      (at least one; CTranslate2's ``patience``, from Kasai et al. 2022, "Beam Decoding
      with Controlled Patience"; True is 1). The fastest rules for ``patience <= 1``; with
      a small vocabulary they can end a sentence on low-probability early EOS candidates
      before the likely output finishes.

    With ``beam = 1`` and ``alpha = 0`` the search is greedy decoding, by every rule.

    ``controls`` and ``prefixes`` act on every step as in :func:`greedy`: while a prefix
    is forced, one hypothesis lives (its only extension is the prefix's token). The bounds
    hold, as they assume only that scores do not grow.

    ``constraints``, per sentence its phrases of target ids (none: ``()``), makes the search
    lexically constrained (:mod:`.constrained_beam`: dynamic beam allocation, Post & Vilar
    2018): EOS ends only a hypothesis that holds each phrase somewhere, in any order, and
    the beam is shared out among hypotheses by how many constraint tokens they have met.
    The stopping rules count and bound those outputs alone. A sentence whose outputs could
    not hold every phrase within ``max_length`` gets them flagged ``constraints_met=False``,
    after any that hold them. A sentence without phrases gets this search's plain outputs;
    with beam 1 the search keeps one hypothesis, and is no longer greedy decoding.

    Returns, per sentence, up to ``n_best`` distinct hypotheses ordered by rank, best
    first. ``n_best`` above ``beam`` widens the beam to ``n_best``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, ``alpha`` negative (the stopping
            bounds assume a penalty that grows with length), or ``early_stopping`` not one
            of True, False, ``"never"`` and a finite number above 0.
    """
    _check_search_options("beam_search", beam, n_best, alpha, early_stopping)
    return beam_search_checked(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha, controls, prefixes,
        early_stopping, constraints,
    )  # fmt: skip


def beam_search_checked(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int,
    alpha: float,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
    early_stopping: EarlyStopping = False,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """:func:`beam_search` of options already checked (the numerics: :mod:`.beam`, and
    :mod:`.constrained_beam` with constraints)."""
    width = max(beam, n_best)
    process = StepProcessor(vocab, controls, prefixes)
    if constraints is not None and any(constraints):
        held = constrained_outputs(
            model, src_ids, src_lengths, vocab, max_length, width, n_best, alpha, constraints,
            process, early_stopping,
        )  # fmt: skip
        return [
            [_hypothesis(ids, raw, trunc, vocab, met) for ids, raw, trunc, met in outs]
            for outs in held
        ]
    found = best_outputs(
        model, src_ids, src_lengths, vocab, max_length, width, n_best, alpha, process,
        early_stopping,
    )  # fmt: skip
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


def _check_search_options(
    caller: str, beam: int, n_best: int, alpha: float, early_stopping: EarlyStopping = False
) -> None:
    if beam < 1 or n_best < 1:
        raise ValueError(f"beam and n_best must be >= 1, got beam={beam}, n_best={n_best}")
    if not alpha >= 0:
        raise ValueError(f"{caller}: alpha (length penalty) must be >= 0, got {alpha}")
    rule = early_stopping
    if not (
        isinstance(rule, bool)
        or rule == "never"
        or (isinstance(rule, (int, float)) and math.isfinite(rule) and rule > 0)
    ):
        raise ValueError(
            f"{caller}: early_stopping must be True, False, 'never' or a patience above 0, "
            f"got {early_stopping!r}"
        )


def _hypothesis(
    ids, score: float, truncated: bool, vocab: Vocabulary, constraints_met: bool = True
) -> Hypothesis:
    ids = tuple(int(i) for i in ids)
    return Hypothesis(
        vocab.decode(ids), ids, float(score), truncated, constraints_met=bool(constraints_met)
    )


def holds_phrases(ids: Sequence[int], phrases: Sequence[Sequence[int]]) -> bool:
    """Whether ``ids`` hold each of ``phrases`` as a run of consecutive ids."""
    ids = tuple(ids)
    for phrase in phrases:
        n = len(phrase)
        if not any(ids[i : i + n] == tuple(phrase) for i in range(len(ids) - n + 1)):
            return False
    return True


def search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int = 1,
    n_best: int = 1,
    alpha: float = 0.0,
    early_stopping: EarlyStopping = False,
    *,
    sampling: Sampling | None = None,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """Decode with the model's own search (a backend declaring the ``search`` capability,
    :class:`seq2seq_kit.backend.SearchModel`): greedy for ``beam == n_best == 1``, else
    beam search, or sampling when ``sampling`` is given, with the semantics of
    :func:`greedy`, :func:`beam_search` and :func:`sample`. ``sampling``, ``controls``,
    ``prefixes`` and ``constraints`` reach the engine only when set, each as the keyword
    argument its capability names (:data:`SEARCH_OPTION_CAPABILITIES`; :func:`plan` and
    :func:`~seq2seq_kit.decoding.encode_constraints` check them). Fills each hypothesis's
    text from ``vocab``, and with constraints its ``constraints_met`` from its ids.

    Raises:
        ValueError: as :func:`beam_search`.
    """
    _check_search_options("search", beam, n_best, alpha, early_stopping)
    return engine_search_checked(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha,
        sampling, controls, prefixes, early_stopping, constraints,
    )  # fmt: skip


def engine_search_checked(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int,
    alpha: float,
    sampling: Sampling | None = None,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
    early_stopping: EarlyStopping = False,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """:func:`search` of options already checked."""
    # an option left unset is not passed: an engine without its capability takes none
    extra: dict[str, object] = {}
    if sampling is not None:
        extra["sampling"] = sampling
    if prefixes is not None and any(prefixes):
        extra["prefixes"] = [tuple(int(i) for i in p) for p in prefixes]
    if controls.min_length:
        extra["min_length"] = controls.min_length
    if controls.no_repeat_ngram_size:
        extra["no_repeat_ngram_size"] = controls.no_repeat_ngram_size
    if controls.banned_ids:
        extra["banned_ids"] = controls.banned_ids
    if early_stopping is not False:
        extra["early_stopping"] = early_stopping
    phrases = [()] * len(src_ids)
    if constraints is not None and any(constraints):
        phrases = [tuple(tuple(int(i) for i in p) for p in row) for row in constraints]
        extra["constraints"] = phrases
    found = model.search(
        src_ids,
        src_lengths,
        max_length=max_length,
        beam=beam,
        n_best=n_best,
        length_penalty=alpha,
        **extra,
    )
    return [
        [_hypothesis(h.ids, h.score, h.truncated, vocab, holds_phrases(h.ids, row)) for h in hyps]
        for hyps, row in zip(found, phrases, strict=True)
    ]
