"""Decoding: the one entry that the API and the server both go through, and the searches
it runs (batched greedy decoding, batched beam search, an engine's own search).

The entry has three steps, so that a server can check a request when it arrives and decode
it later together with others: :func:`plan` checks the decoding options against the
backend and gives a :class:`Search`; :func:`encode` turns texts into source ids, checked
against the model; :func:`decode` decodes the ids of many texts with one :class:`Search`,
dispatching each batch to greedy decoding, beam search or the engine's own search.

Greedy decoding and beam search drive a model only through ``encode``, ``step`` and
``reorder``. Targets PAD, BOS and UNK are masked out of every step's log-probabilities, so
a hypothesis never contains a special; EOS ends it. A hypothesis holds at most
``max_length`` tokens before its EOS; one that reached that many without the model
choosing EOS is flagged ``truncated``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .backend import Model
from .beam import EarlyStopping, best_outputs, length_penalty, mask_specials
from .errors import BackendError, InputTooLongError, allocating
from .spec import Spec, max_source_tokens
from .vocab import PAD, Vocabulary, pad

if TYPE_CHECKING:
    from .config import DecodeConfig

__all__ = [
    "EarlyStopping",
    "Hypothesis",
    "Search",
    "beam_search",
    "decode",
    "encode",
    "encode_text",
    "forced_attention",
    "greedy",
    "length_penalty",
    "plan",
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
    early_stopping: EarlyStopping = False,
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

    Returns, per sentence, up to ``n_best`` distinct hypotheses ordered by rank, best
    first. ``n_best`` above ``beam`` widens the beam to ``n_best``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, ``alpha`` negative (the stopping
            bounds assume a penalty that grows with length), or ``early_stopping`` not one
            of True, False, ``"never"`` and a finite number above 0.
    """
    _check_search_options("beam_search", beam, n_best, alpha, early_stopping)
    return _beam_search(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha, early_stopping
    )


def _beam_search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int,
    alpha: float,
    early_stopping: EarlyStopping,
) -> list[list[Hypothesis]]:
    """:func:`beam_search` of options already checked (the numerics: :mod:`.beam`)."""
    width = max(beam, n_best)
    found = best_outputs(
        model, src_ids, src_lengths, vocab, max_length, width, n_best, alpha, early_stopping
    )
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
    caller: str, beam: int, n_best: int, alpha: float, early_stopping: EarlyStopping
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
    early_stopping: EarlyStopping = False,
) -> list[list[Hypothesis]]:
    """Decode with the model's own search (a backend declaring the ``search`` capability,
    :class:`seq2seq_kit.backend.SearchModel`): greedy for ``beam == n_best == 1``, else
    beam search, with the semantics of :func:`greedy` and :func:`beam_search`. Fills each
    hypothesis's text from ``vocab``.

    Raises:
        ValueError: as :func:`beam_search`.
    """
    _check_search_options("search", beam, n_best, alpha, early_stopping)
    return _engine_search(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha, early_stopping
    )


def _engine_search(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam: int,
    n_best: int,
    alpha: float,
    early_stopping: EarlyStopping,
) -> list[list[Hypothesis]]:
    """:func:`search` of options already checked."""
    found = model.search(
        src_ids,
        src_lengths,
        max_length=max_length,
        beam=beam,
        n_best=n_best,
        length_penalty=alpha,
        early_stopping=early_stopping,
    )
    return [[_hypothesis(h.ids, h.score, h.truncated, vocab) for h in hyps] for hyps in found]


@dataclass(frozen=True)
class Search:
    """Decoding options checked against the backend that runs a model, made by
    :func:`plan`: what :func:`decode` runs, unchecked. Equal searches may decode their
    texts in one call (a server batches requests by them).

    Attributes:
        beam: hypotheses kept per source at each step (1 with ``n_best`` 1: greedy).
        n_best: hypotheses returned per source; above ``beam`` it widens the beam.
        length_penalty: GNMT alpha (:func:`length_penalty`), >= 0.
        early_stopping: when a beam search stops (:func:`beam_search`).
        max_length: the most tokens a hypothesis may hold, within what the model can
            decode (:func:`seq2seq_kit.spec.decoding_cap`).
        batch_size: sources decoded together.
        engine: decode with the backend's own search (capability ``search``), which
            decodes greedily too.
    """

    beam: int
    n_best: int
    length_penalty: float
    early_stopping: EarlyStopping
    max_length: int
    batch_size: int
    engine: bool


def plan(
    options: DecodeConfig, max_length: int, capabilities: Collection[str], backend: str
) -> Search:
    """The search ``options`` ask for, checked against ``backend`` (the name of the backend
    running the model) and its ``capabilities``. The values of ``options`` obey the
    ``[decode]`` rules (a :class:`~seq2seq_kit.config.DecodeConfig` is validated when
    made); ``max_length`` is the cap already resolved for the model
    (:meth:`seq2seq_kit.translator.Translator.decoding_limit`).

    Raises:
        BackendError: beam search (``beam`` or ``n_best`` above 1) asked of a backend
            without the ``beam`` capability.
    """
    if (options.beam > 1 or options.n_best > 1) and "beam" not in capabilities:
        raise BackendError(
            f"backend {backend!r} does not declare the 'beam' capability: decode "
            f"greedily (beam 1, n-best 1) or choose another backend"
        )
    return Search(
        beam=options.beam,
        n_best=options.n_best,
        length_penalty=options.length_penalty,
        early_stopping=options.early_stopping,
        max_length=max_length,
        batch_size=options.batch_size,
        engine="search" in capabilities,
    )


def encode(
    texts: Sequence[str], vocab: Vocabulary, spec: Spec, unknown: str = "error"
) -> list[list[int] | None]:
    """The source ids of each text (:func:`encode_text`, ``line`` its 1-based index), or
    None for a blank text, which :func:`decode` answers with one empty hypothesis.

    Raises:
        UnknownTokenError: as :func:`encode_text`, naming the text's line.
        InputTooLongError: as :func:`encode_text`, naming the text's line.
    """
    return [
        encode_text(text, vocab, spec, unknown, line) if text.strip() else None
        for line, text in enumerate(texts, start=1)
    ]


def encode_text(
    text: str, vocab: Vocabulary, spec: Spec, unknown: str = "error", line: int | None = None
) -> list[int]:
    """The source ids of ``text`` (int, no BOS or EOS) for a model of ``spec``.

    Raises:
        UnknownTokenError: a token not in ``vocab``, naming it, its position and ``line``,
            unless ``unknown="replace"`` maps it to UNK.
        InputTooLongError: more tokens than the model can encode (a Transformer's
            ``max_positions``), naming ``line`` and both lengths. Cutting the text would
            translate another sentence than the one given (OpenNMT refuses a source over
            ``-src_seq_length`` alike).
    """
    ids = vocab.encode(text, unknown=unknown, line=line)
    limit = max_source_tokens(spec)
    if limit is not None and len(ids) > limit:
        raise InputTooLongError(len(ids), limit, line)
    return ids


def decode(
    model: Model,
    rows: Sequence[Sequence[int] | None],
    vocab: Vocabulary,
    search: Search,
) -> list[list[Hypothesis]]:
    """Decode the sources ``rows`` (from :func:`encode`; None: a blank text) into the
    target ``vocab`` as ``search`` says, ``search.batch_size`` sources at a time, sorted
    by length (similar lengths pad less). Returns, per row, its hypotheses best first:
    one for greedy decoding and for a blank text (empty), up to ``n_best`` otherwise.

    Raises:
        OutOfMemory: decoding ran out of memory (in any backend), naming
            ``decode.batch_size``, ``beam``, ``n_best`` and ``max_length``.
    """
    ids = {i: row for i, row in enumerate(rows) if row is not None}
    todo = sorted(ids, key=lambda i: len(ids[i]))
    results: list[list[Hypothesis]] = [[Hypothesis("", (), 0.0, False)] for _ in rows]
    with allocating(
        lambda: (
            f"decode.batch_size = {search.batch_size}, decode.beam = {search.beam}, "
            f"decode.n_best = {search.n_best}, decode.max_length = {search.max_length} or "
            f"the inputs' length (up to {len(ids[todo[-1]])} tokens)"
        )
    ):
        for start in range(0, len(todo), search.batch_size):
            chunk = todo[start : start + search.batch_size]
            src = pad([ids[i] for i in chunk])
            lengths = np.array([len(ids[i]) for i in chunk], dtype=np.int32)
            for i, hyps in zip(
                chunk, _decode_batch(model, src, lengths, vocab, search), strict=True
            ):
                results[i] = hyps
    return results


def _decode_batch(
    model: Model, src: np.ndarray, lengths: np.ndarray, vocab: Vocabulary, search: Search
) -> list[list[Hypothesis]]:
    """One batch decoded by the search that ``search`` names, its options already
    checked (:func:`plan`)."""
    args = (model, src, lengths, vocab, search.max_length)
    options = (
        search.beam,
        search.n_best,
        search.length_penalty,
        search.early_stopping,
    )
    if search.engine:
        return _engine_search(*args, *options)
    if search.beam == 1 and search.n_best == 1:
        return [[h] for h in greedy(*args)]
    return _beam_search(*args, *options)
