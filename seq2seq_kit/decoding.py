"""Decoding: the one entry that the API and the server both go through, and the searches
it runs (batched greedy decoding, sampling, batched beam search, an engine's own search).

The entry has three steps, so that a server can check a request when it arrives and decode
it later together with others: :func:`plan` checks the decoding options against the
backend and gives a :class:`Search`; :func:`encode` turns texts into source ids, checked
against the model; :func:`decode` decodes the ids of many texts with one :class:`Search`,
dispatching each batch to greedy decoding, sampling, beam search or the engine's own
search (:func:`encode_prefixes` checks the target prefixes of the texts).

Greedy decoding, sampling and beam search drive a model only through ``encode``, ``step``
and ``reorder``. Each step's log-probabilities go through one processing
(:class:`~seq2seq_kit.logits_processing.StepProcessor`), whatever the search: targets PAD,
BOS and UNK are masked out, so a hypothesis never contains a special; the output controls
(:class:`~seq2seq_kit.logits_processing.OutputControls`: ``min_length``,
``no_repeat_ngram_size``, banned tokens) rule tokens out; a target prefix is forced. EOS
ends a hypothesis. A hypothesis holds at most ``max_length`` tokens before its EOS (its
prefix's included); one that reached that many without the model choosing EOS is flagged
``truncated``.

Scores are the model's own: the sum of the log-probabilities of a hypothesis's tokens,
a target prefix's included, whatever the search (a temperature, top-k or top-p shapes only
what sampling draws from, and a masked token leaves the others' log-probabilities as they
were).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .backend import Model
from .beam import best_outputs, length_penalty
from .errors import (
    CapabilityError,
    InputTooLongError,
    OptionError,
    PrefixError,
    allocating,
    describe_token,
    option,
)
from .logits_processing import NO_CONTROLS, OutputControls, StepProcessor
from .sampling import Sampling, draw, fresh_seed, output_uniforms, sampling_weights
from .spec import Spec, max_source_tokens
from .vocab import PAD, SPECIALS, Vocabulary, pad

if TYPE_CHECKING:
    from .config import DecodeConfig

__all__ = [
    "NO_CONTROLS",
    "Hypothesis",
    "OutputControls",
    "Sampling",
    "Search",
    "beam_search",
    "decode",
    "encode",
    "encode_prefixes",
    "encode_text",
    "forced_attention",
    "greedy",
    "length_penalty",
    "plan",
    "sample",
    "search",
]

#: The capability a backend with its own search (``search``) declares for each decoding
#: option its engine maps; the core's searches take every one of them.
SEARCH_OPTION_CAPABILITIES = {
    "sampling": "sampling",
    "prefix": "prefix",
    "min_length": "min_length",
    "no_repeat_ngram_size": "no_repeat_ngram",
    "banned_tokens": "banned_tokens",
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
    return _sample(
        model, src_ids, src_lengths, vocab, max_length, sampling, alpha, controls, prefixes
    )


def _sample(
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
    *,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
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

    ``controls`` and ``prefixes`` act on every step as in :func:`greedy`: while a prefix
    is forced, one hypothesis lives (its only extension is the prefix's token). The bound
    stays exact, as it assumes only that scores do not grow.

    Returns, per sentence, up to ``n_best`` distinct hypotheses ordered by rank, best
    first. ``n_best`` above ``beam`` widens the beam to ``n_best``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, or ``alpha`` negative (the stopping
            bound assumes a penalty that grows with length).
    """
    _check_search_options("beam_search", beam, n_best, alpha)
    return _beam_search(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha, controls, prefixes
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
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """:func:`beam_search` of options already checked (the numerics: :mod:`.beam`)."""
    width = max(beam, n_best)
    process = StepProcessor(vocab, controls, prefixes)
    found = best_outputs(
        model, src_ids, src_lengths, vocab, max_length, width, n_best, alpha, process
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
    *,
    sampling: Sampling | None = None,
    controls: OutputControls = NO_CONTROLS,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Decode with the model's own search (a backend declaring the ``search`` capability,
    :class:`seq2seq_kit.backend.SearchModel`): greedy for ``beam == n_best == 1``, else
    beam search, or sampling when ``sampling`` is given, with the semantics of
    :func:`greedy`, :func:`beam_search` and :func:`sample`. ``sampling``, ``controls`` and
    ``prefixes`` reach the engine only when set, each as the keyword argument its
    capability names (:data:`SEARCH_OPTION_CAPABILITIES`; :func:`plan` checks them). Fills
    each hypothesis's text from ``vocab``.

    Raises:
        ValueError: ``beam`` or ``n_best`` below 1, or ``alpha`` negative.
    """
    _check_search_options("search", beam, n_best, alpha)
    return _engine_search(
        model, src_ids, src_lengths, vocab, max_length, beam, n_best, alpha,
        sampling, controls, prefixes,
    )  # fmt: skip


def _engine_search(
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
    found = model.search(
        src_ids,
        src_lengths,
        max_length=max_length,
        beam=beam,
        n_best=n_best,
        length_penalty=alpha,
        **extra,
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
        max_length: the most tokens a hypothesis may hold, within what the model can
            decode (:func:`seq2seq_kit.spec.decoding_cap`).
        batch_size: sources decoded together.
        engine: decode with the backend's own search (capability ``search``), which
            decodes greedily too.
        sampling: draw the outputs (:func:`sample`) instead of searching; None: search.
        controls: what every output obeys (:class:`OutputControls`).
        takes_prefix: whether the search can force a target prefix (the core's always;
            an engine's with the ``prefix`` capability): :func:`encode_prefixes` checks.
    """

    beam: int
    n_best: int
    length_penalty: float
    max_length: int
    batch_size: int
    engine: bool
    sampling: Sampling | None = None
    controls: OutputControls = NO_CONTROLS
    takes_prefix: bool = True

    @property
    def outputs_per_input(self) -> int:
        """The most hypotheses an input gets: ``num_samples`` when sampling, else
        ``n_best``."""
        return self.sampling.num_samples if self.sampling is not None else self.n_best


def plan(
    options: DecodeConfig,
    max_length: int,
    capabilities: Collection[str],
    backend: str,
    vocab: Vocabulary | None = None,
) -> Search:
    """The search ``options`` ask for, checked against ``backend`` (the name of the backend
    running the model), its ``capabilities`` and the target ``vocab`` (which
    ``banned_tokens`` must name; needed only with them). The values of ``options`` obey the
    ``[decode]`` rules (a :class:`~seq2seq_kit.config.DecodeConfig` is validated when
    made); ``max_length`` is the cap already resolved for the model
    (:meth:`seq2seq_kit.translator.Translator.decoding_limit`).

    A backend that steps the decoder gets every option from the core's searches; one with
    its own search (``search``) must declare the capability of each option it is asked
    for (:data:`SEARCH_OPTION_CAPABILITIES`).

    Raises:
        CapabilityError: beam search (``beam`` or ``n_best`` above 1) asked of a backend
            without the ``beam`` capability, or an option asked of an engine without its
            capability; naming the option (``error.option``) and the capability.
        OptionError: ``min_length`` above ``max_length``, or ``banned_tokens`` naming a
            token ``vocab`` lacks, a special, or every token; naming the option.
    """
    if (options.beam > 1 or options.n_best > 1) and "beam" not in capabilities:
        raise CapabilityError(
            f"backend {backend!r} does not declare the 'beam' capability: decode "
            f"greedily (beam 1, n-best 1) or choose another backend",
            "beam",
        )
    engine = "search" in capabilities
    if engine:
        for name in _options_asked(options):
            needed = SEARCH_OPTION_CAPABILITIES[name]
            if needed not in capabilities:
                raise CapabilityError(
                    f"{option('decode.' + name, None)}: backend {backend!r} decodes with its "
                    f"own search, which does not declare the {needed!r} capability; leave "
                    f"{name} unset or choose a backend that steps the decoder (numpy, "
                    f"torch...)",
                    name,
                )
    if options.min_length > max_length:
        raise OptionError(
            f"{option('decode.min_length', options.min_length)} is above the length cap of "
            f"{max_length} tokens ({option('decode.max_length', None)}, or the model's): no "
            f"output could end",
            "min_length",
        )
    sampling = None
    if options.sampling:
        sampling = Sampling(
            temperature=options.temperature,
            top_k=options.top_k,
            top_p=options.top_p,
            num_samples=options.num_samples,
            seed=options.seed,
        )
    return Search(
        beam=options.beam,
        n_best=options.n_best,
        length_penalty=options.length_penalty,
        max_length=max_length,
        batch_size=options.batch_size,
        engine=engine,
        sampling=sampling,
        controls=OutputControls(
            min_length=options.min_length,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            banned_ids=_banned_ids(options.banned_tokens, vocab),
        ),
        takes_prefix=not engine or "prefix" in capabilities,
    )


def _options_asked(options: DecodeConfig) -> list[str]:
    """The options of :data:`SEARCH_OPTION_CAPABILITIES` that ``options`` set (the target
    prefix comes with the inputs: :func:`encode_prefixes`)."""
    asked = {
        "sampling": options.sampling,
        "min_length": options.min_length > 0,
        "no_repeat_ngram_size": options.no_repeat_ngram_size > 0,
        "banned_tokens": bool(options.banned_tokens),
    }
    return [name for name, set_ in asked.items() if set_]


def _banned_ids(tokens: Sequence[str], vocab: Vocabulary | None) -> tuple[int, ...]:
    """The target ids of ``tokens`` (sorted, distinct).

    Raises:
        OptionError: a token ``vocab`` lacks or a special (naming ``banned_tokens[i]``), or
            every data token banned.
        ValueError: tokens without a ``vocab`` to find them in.
    """
    if not tokens:
        return ()
    if vocab is None:
        raise ValueError("plan: banned_tokens needs the target vocabulary (vocab=...)")
    ids = set()
    for i, token in enumerate(tokens):
        where = f"banned_tokens[{i}]"
        named = f"{option('decode.banned_tokens', None)}: {token!r}"
        if token in SPECIALS:
            raise OptionError(
                f"{named} is a special token: PAD, BOS and UNK are never output, and EOS ends "
                f"every output (to make outputs longer, set "
                f"{option('decode.min_length', None)})",
                where,
            )
        if token not in vocab:
            raise OptionError(
                f"{named} is not a token of the model's target vocabulary "
                f"({len(vocab.tokens)} tokens, e.g. {', '.join(map(repr, vocab.tokens[:5]))})",
                where,
            )
        ids.add(vocab.token_id(token))
    if len(ids) >= len(vocab.tokens):
        raise OptionError(
            f"{option('decode.banned_tokens', None)} bans every token of the target "
            f"vocabulary: only empty outputs would remain",
            "banned_tokens",
        )
    return tuple(sorted(ids))


def encode_prefixes(
    prefixes: Sequence[str] | None,
    rows: Sequence[Sequence[int] | None],
    vocab: Vocabulary,
    search: Search,
) -> list[tuple[int, ...]] | None:
    """The target ids each output of ``rows`` (the sources, from :func:`encode`) must start
    with: ``prefixes[i]`` (one per row; ``""`` for none) tokenized alone by the target
    ``vocab``. None when no prefix is given (``prefixes`` None, or every one ``""``).
    Decoding goes on after the prefix; the prefix counts in the output's length, its
    ``min_length`` and ``max_length``, and in its score.

    Raises:
        PrefixError: naming the 1-based ``line`` of the prefix: a prefix count that is not
            one per row, a piece the target vocabulary lacks, a token of
            ``banned_tokens``, more tokens than ``search.max_length``, a prefix of a blank
            source (nothing is decoded for it), or a search that cannot force one (an
            engine without the ``prefix`` capability).
    """
    if prefixes is None:
        return None
    if len(prefixes) != len(rows):
        raise PrefixError(
            f'{len(prefixes)} prefixes for {len(rows)} inputs: give one per input ("" for none)',
            None,
        )
    if not any(prefixes):
        return None
    if not search.takes_prefix:
        raise PrefixError(
            "the backend decodes with its own search, which does not declare the 'prefix' "
            "capability; decode without a prefix or with a backend that steps the decoder",
            next(i for i, p in enumerate(prefixes, start=1) if p),
        )
    banned = set(search.controls.banned_ids)
    out = []
    for line, (text, row) in enumerate(zip(prefixes, rows, strict=True), start=1):
        if not text:
            out.append(())
            continue
        if row is None:
            raise PrefixError("the source is blank: give a source text to continue", line)
        ids = []
        for position, piece in enumerate(vocab.pieces(text), start=1):
            if piece not in vocab:
                raise PrefixError(
                    f"{describe_token(piece, position, vocab.tokenizer_name)} is not in the "
                    f"model's target vocabulary",
                    line,
                )
            token = vocab.token_id(piece)
            if token in banned:
                raise PrefixError(
                    f"{describe_token(piece, position, vocab.tokenizer_name)} is one of "
                    f"the banned tokens ({option('decode.banned_tokens', None)})",
                    line,
                )
            ids.append(token)
        if len(ids) > search.max_length:
            raise PrefixError(
                f"{len(ids)} tokens, over the length cap of {search.max_length} "
                f"({option('decode.max_length', None)}, or the model's)",
                line,
            )
        out.append(tuple(ids))
    return out


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
    prefixes: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Decode the sources ``rows`` (from :func:`encode`; None: a blank text) into the
    target ``vocab`` as ``search`` says, ``search.batch_size`` sources at a time, sorted
    by length (similar lengths pad less), each output starting with its row's target ids
    in ``prefixes`` (from :func:`encode_prefixes`; None: no prefix). Returns, per row, its
    hypotheses best first: one for greedy decoding and for a blank text (empty), up to
    ``n_best`` for beam search, ``num_samples`` for sampling.

    Raises:
        OutOfMemory: decoding ran out of memory (in any backend), naming
            ``decode.batch_size``, ``beam``, ``n_best``, ``num_samples`` and
            ``max_length``.
    """
    ids = {i: row for i, row in enumerate(rows) if row is not None}
    todo = sorted(ids, key=lambda i: len(ids[i]))
    results: list[list[Hypothesis]] = [[Hypothesis("", (), 0.0, False)] for _ in rows]
    samples = f"decode.num_samples = {search.sampling.num_samples}, " if search.sampling else ""
    with allocating(
        lambda: (
            f"decode.batch_size = {search.batch_size}, decode.beam = {search.beam}, "
            f"decode.n_best = {search.n_best}, {samples}decode.max_length = "
            f"{search.max_length} or the inputs' length (up to {len(ids[todo[-1]])} tokens)"
        )
    ):
        for start in range(0, len(todo), search.batch_size):
            chunk = todo[start : start + search.batch_size]
            src = pad([ids[i] for i in chunk])
            lengths = np.array([len(ids[i]) for i in chunk], dtype=np.int32)
            forced = None if prefixes is None else [tuple(prefixes[i]) for i in chunk]
            for i, hyps in zip(
                chunk, _decode_batch(model, src, lengths, vocab, search, forced), strict=True
            ):
                results[i] = hyps
    return results


def _decode_batch(
    model: Model,
    src: np.ndarray,
    lengths: np.ndarray,
    vocab: Vocabulary,
    search: Search,
    prefixes: list[tuple[int, ...]] | None = None,
) -> list[list[Hypothesis]]:
    """One batch decoded by the search that ``search`` names, its options already
    checked (:func:`plan`, :func:`encode_prefixes`)."""
    args = (model, src, lengths, vocab, search.max_length)
    if prefixes is not None and not any(prefixes):
        prefixes = None  # this batch's rows have none: the plain step
    if search.engine:
        return _engine_search(
            *args, search.beam, search.n_best, search.length_penalty,
            search.sampling, search.controls, prefixes,
        )  # fmt: skip
    if search.sampling is not None:
        return _sample(*args, search.sampling, search.length_penalty, search.controls, prefixes)
    if search.beam == 1 and search.n_best == 1:
        return [[h] for h in greedy(*args, controls=search.controls, prefixes=prefixes)]
    return _beam_search(
        *args, search.beam, search.n_best, search.length_penalty, search.controls, prefixes
    )
