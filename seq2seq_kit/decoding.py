"""Decoding: the one entry that the API and the server both go through.

It has three steps, so that a server can check a request when it arrives and decode it
later together with others: :func:`plan` checks the decoding options against the backend
and gives a :class:`Search`; :func:`encode` turns texts into source ids, checked against
the model; :func:`decode` decodes the ids of many texts with one :class:`Search`,
dispatching each batch to greedy decoding, sampling, beam search or the engine's own
search (:mod:`.searches`, whose names this module re-exports, as it does
:func:`encode_prefixes`, which checks the target prefixes of the texts, and
:func:`encode_constraints`, their lexical constraints, from :mod:`.target_inputs`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .alignment import align, replace_unknowns
from .backend import Model
from .beam import EarlyStopping, length_penalty
from .errors import (
    CapabilityError,
    InputTooLongError,
    OptionError,
    allocating,
    option,
)
from .logits_processing import NO_CONTROLS, OutputControls
from .phrase_table import PhraseTable, load_phrase_table
from .sampling import Sampling
from .searches import (
    SEARCH_OPTION_CAPABILITIES,
    Hypothesis,
    beam_search,
    beam_search_checked,
    engine_search_checked,
    forced_attention,
    greedy,
    sample,
    sample_checked,
    search,
)
from .spec import Spec, max_source_tokens
from .target_inputs import encode_constraints, encode_prefixes
from .vocab import EOS, SPECIALS, UNK, Vocabulary, pad

if TYPE_CHECKING:
    from .config import DecodeConfig

__all__ = [
    "SEARCH_OPTION_CAPABILITIES",
    "NO_CONTROLS",
    "EarlyStopping",
    "Hypothesis",
    "OutputControls",
    "Sampling",
    "Search",
    "beam_search",
    "decode",
    "encode",
    "encode_constraints",
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
        early_stopping: when a beam search stops (:func:`beam_search`).
        sampling: draw the outputs (:func:`sample`) instead of searching; None: search.
        controls: what every output obeys (:class:`OutputControls`).
        takes_prefix: whether the search can force a target prefix (the core's always;
            an engine's with the ``prefix`` capability): :func:`encode_prefixes` checks.
        alignments: give each hypothesis its alignment (:mod:`.alignment`).
        replace_unk: let UNK be output (``controls.unk``) and replace each in the text
            by the source token it is aligned to, through ``phrase_table`` when given.
        phrase_table: ``replace_unk``'s table, or None.
        takes_constraints: whether the search can hold lexical constraints (the core's
            always; an engine's with the ``constraints`` capability):
            :func:`encode_constraints` checks.
    """

    beam: int
    n_best: int
    length_penalty: float
    max_length: int
    batch_size: int
    engine: bool
    early_stopping: EarlyStopping = False
    sampling: Sampling | None = None
    controls: OutputControls = NO_CONTROLS
    takes_prefix: bool = True
    alignments: bool = False
    replace_unk: bool = False
    phrase_table: PhraseTable | None = None

    @property
    def aligns(self) -> bool:
        """Whether decoding reads the hypotheses' alignments (asked for, or to replace
        UNK)."""
        return self.alignments or self.replace_unk

    takes_constraints: bool = True

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
    *,
    attention: bool = False,
    phrase_table: PhraseTable | None = None,
) -> Search:
    """The search ``options`` ask for, checked against ``backend`` (the name of the backend
    running the model), its ``capabilities``, the target ``vocab`` (which
    ``banned_tokens`` must name; needed only with them) and whether the model has
    ``attention`` (which ``alignments`` and ``replace_unk`` need), ``phrase_table``
    being ``options.replace_unk_table`` already read (a model's own:
    :meth:`seq2seq_kit.translator.Translator.phrase_table_of`; None: read from the file
    it names, once per version of the file). The values of
    ``options`` obey the ``[decode]`` rules (a :class:`~seq2seq_kit.config.DecodeConfig`
    is validated when made); ``max_length`` is the cap already resolved for the model
    (:meth:`seq2seq_kit.translator.Translator.decoding_limit`).

    A backend that steps the decoder gets every option from the core's searches; one with
    its own search (``search``) must declare the capability of each option it is asked
    for (:data:`SEARCH_OPTION_CAPABILITIES`).

    Raises:
        CapabilityError: beam search (``beam`` or ``n_best`` above 1) asked of a backend
            without the ``beam`` capability, or an option asked of an engine without its
            capability; naming the option (``error.option``) and the capability;
            ``alignments`` or ``replace_unk`` asked of an engine (it returns no attention).
        OptionError: ``min_length`` above ``max_length``, ``banned_tokens`` naming a
            token ``vocab`` lacks, a special, or every token, or ``alignments`` or
            ``replace_unk`` for a model without ``attention``; naming the option.
        DataError: ``replace_unk_table`` cannot be read or breaks the phrase table format
            (:mod:`seq2seq_kit.phrase_table`), naming the file and line.
    """
    _check_capabilities(options, capabilities, backend)
    engine = "search" in capabilities
    _check_alignments(options, engine, attention, backend)
    if options.min_length > max_length:
        raise OptionError(
            f"{option('decode.min_length', options.min_length)} is above the length cap of "
            f"{max_length} tokens ({option('decode.max_length', None)}, or the model's): no "
            f"output could end",
            "min_length",
        )
    return Search(
        beam=options.beam,
        n_best=options.n_best,
        length_penalty=options.length_penalty,
        early_stopping=options.early_stopping,
        max_length=max_length,
        batch_size=options.batch_size,
        engine=engine,
        sampling=_sampling(options),
        controls=OutputControls(
            min_length=options.min_length,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            banned_ids=_banned_ids(options.banned_tokens, vocab, options.replace_unk),
            unk=options.replace_unk,
        ),
        takes_prefix=not engine or "prefix" in capabilities,
        alignments=options.alignments,
        replace_unk=options.replace_unk,
        phrase_table=_phrase_table(options.replace_unk_table, phrase_table),
        takes_constraints=not engine or "constraints" in capabilities,
    )


def _check_capabilities(options: DecodeConfig, capabilities: Collection[str], backend: str) -> None:
    """Refuse what ``options`` ask that backend ``backend``'s ``capabilities`` lack: beam
    search, or (of an engine with its own search) an option whose capability
    (:data:`SEARCH_OPTION_CAPABILITIES`) it does not declare.

    Raises:
        CapabilityError: as :func:`plan` says, naming the option and the capability.
    """
    if (options.beam > 1 or options.n_best > 1) and "beam" not in capabilities:
        raise CapabilityError(
            f"backend {backend!r} does not declare the 'beam' capability: decode "
            f"greedily (beam 1, n-best 1) or choose another backend",
            "beam",
        )
    if "search" not in capabilities:
        return  # the core's searches serve every option
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


def _sampling(options: DecodeConfig) -> Sampling | None:
    """The sampling ``options`` ask for; None for a search (``sampling`` off)."""
    if not options.sampling:
        return None
    return Sampling(
        temperature=options.temperature,
        top_k=options.top_k,
        top_p=options.top_p,
        num_samples=options.num_samples,
        seed=options.seed,
    )


def _phrase_table(path: str | None, read: PhraseTable | None) -> PhraseTable | None:
    """The table at ``path``: ``read`` when given, else read (once per version of the
    file); None without a path.

    Raises:
        DataError: as :func:`seq2seq_kit.phrase_table.read_phrase_table`.
    """
    if not path:
        return None
    return read if read is not None else load_phrase_table(path)


def _check_alignments(options: DecodeConfig, engine: bool, attention: bool, backend: str) -> None:
    """Refuse ``alignments`` and ``replace_unk`` where no attention weights can be read.

    Raises:
        CapabilityError: asked of an engine with its own search.
        OptionError: asked of a model without attention.
    """
    for name in ("alignments", "replace_unk"):
        if not getattr(options, name):
            continue
        asked = option("decode." + name, None)
        if engine:
            raise CapabilityError(
                f"{asked}: backend {backend!r} decodes with its own search, which returns no "
                f"attention weights to align with; choose a backend that steps the decoder "
                f"(numpy, torch...)",
                name,
            )
        if not attention:
            raise OptionError(
                f"{asked}: the model has no attention (model.attention = none), from which "
                f"alignments are read; train a model with attention to use it",
                name,
            )


def _options_asked(options: DecodeConfig) -> list[str]:
    """The options of :data:`SEARCH_OPTION_CAPABILITIES` that ``options`` set (the target
    prefix and the constraints come with the inputs: :func:`encode_prefixes`,
    :func:`encode_constraints`)."""
    asked = {
        "sampling": options.sampling,
        "min_length": options.min_length > 0,
        "no_repeat_ngram_size": options.no_repeat_ngram_size > 0,
        "banned_tokens": bool(options.banned_tokens),
    }
    return [name for name, set_ in asked.items() if set_]


def _banned_ids(
    tokens: Sequence[str], vocab: Vocabulary | None, replace_unk: bool = False
) -> tuple[int, ...]:
    """The target ids of ``tokens`` (sorted, distinct), for a search that outputs UNK
    only with ``replace_unk``.

    Raises:
        OptionError: a token ``vocab`` lacks or a special (naming ``banned_tokens[i]`` and
            why it cannot be banned), or every data token banned.
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
            raise OptionError(f"{named} is a special token: {_special(token, replace_unk)}", where)
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


def _special(token: str, replace_unk: bool) -> str:
    """Why special ``token`` is no token to ban, for a search that outputs UNK only with
    ``replace_unk``."""
    replace_unk_option = option("decode.replace_unk", None)
    if token == SPECIALS[EOS]:
        return (
            f"EOS ends every output (to make outputs longer, set "
            f"{option('decode.min_length', None)})"
        )
    if token != SPECIALS[UNK]:
        return "PAD and BOS are never output"
    if replace_unk:
        return (
            f"{replace_unk_option} lets the model output UNK, each replaced by the source "
            f"token it is aligned to; to keep UNK out of the outputs, turn "
            f"{replace_unk_option} off"
        )
    return f"UNK is never output unless {replace_unk_option} is on"


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
    *,
    sources: Sequence[Sequence[str] | None] | None = None,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """Decode the sources ``rows`` (from :func:`encode`; None: a blank text) into the
    target ``vocab`` as ``search`` says, ``search.batch_size`` sources at a time, sorted
    by length (similar lengths pad less), each output starting with its row's target ids
    in ``prefixes`` (from :func:`encode_prefixes`; None: no prefix) and holding its row's
    phrases in ``constraints`` (from :func:`encode_constraints`; None: none). Returns, per
    row, its hypotheses best first: one for greedy decoding and for a blank text (empty),
    up to ``n_best`` for beam search, ``num_samples`` for sampling.

    With ``search.alignments`` each hypothesis carries its alignment; with
    ``search.replace_unk`` each UNK of its text is replaced by the text of the source token
    it is aligned to, ``sources[i][k]`` for source token ``k`` of row ``i``
    (:func:`seq2seq_kit.alignment.source_texts`; needed only then), through
    ``search.phrase_table``. Both read the attention of the chosen hypotheses in one forced
    pass of the decoder per batch, after the search (:func:`seq2seq_kit.alignment.align`).

    Raises:
        OutOfMemory: decoding ran out of memory (in any backend), naming
            ``decode.batch_size``, ``beam``, ``n_best``, ``num_samples`` and
            ``max_length``.
        ValueError: ``search.replace_unk`` without ``sources``.
    """
    if search.replace_unk and sources is None:
        raise ValueError("decode: replace_unk needs the source tokens' texts (sources=...)")
    ids = {i: row for i, row in enumerate(rows) if row is not None}
    todo = sorted(ids, key=lambda i: len(ids[i]))
    blank = Hypothesis("", (), 0.0, False, alignment=() if search.alignments else None)
    results: list[list[Hypothesis]] = [[blank] for _ in rows]
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
            held = None if constraints is None else [tuple(constraints[i]) for i in chunk]
            found = _decode_batch(model, src, lengths, vocab, search, forced, held)
            if search.aligns:
                found = align(model, src, lengths, found, vocab.bos_id)
            for i, hyps in zip(chunk, found, strict=True):
                if search.replace_unk:
                    hyps = [_replaced(h, sources[i], vocab, search) for h in hyps]
                results[i] = hyps
    return results


def _replaced(
    hyp: Hypothesis, source: Sequence[str] | None, vocab: Vocabulary, search: Search
) -> Hypothesis:
    """``hyp`` with its UNK replaced, its alignment kept only when asked for."""
    if source is None:
        raise ValueError("decode: replace_unk needs the texts of a decoded row's source tokens")
    hyp = replace_unknowns(hyp, source, vocab, search.phrase_table)
    return hyp if search.alignments else replace(hyp, alignment=None)


def _decode_batch(
    model: Model,
    src: np.ndarray,
    lengths: np.ndarray,
    vocab: Vocabulary,
    search: Search,
    prefixes: list[tuple[int, ...]] | None = None,
    constraints: list[tuple[tuple[int, ...], ...]] | None = None,
) -> list[list[Hypothesis]]:
    """One batch decoded by the search that ``search`` names, its options already
    checked (:func:`plan`, :func:`encode_prefixes`, :func:`encode_constraints`)."""
    args = (model, src, lengths, vocab, search.max_length)
    if prefixes is not None and not any(prefixes):
        prefixes = None  # this batch's rows have none: the plain step
    if constraints is not None and not any(constraints):
        constraints = None  # nor constraints: the plain searches
    if search.engine:
        return engine_search_checked(
            *args, search.beam, search.n_best, search.length_penalty,
            search.sampling, search.controls, prefixes, search.early_stopping, constraints,
        )  # fmt: skip
    if search.sampling is not None:
        return sample_checked(
            *args, search.sampling, search.length_penalty, search.controls, prefixes
        )
    if search.beam == 1 and search.n_best == 1:
        if constraints is None:
            return [[h] for h in greedy(*args, controls=search.controls, prefixes=prefixes)]
        # greedy decoding for the rows without constraints, as they would get alone (a
        # beam of one with a length penalty is not greedy decoding), a beam of one for the
        # others
        free = [i for i, phrases in enumerate(constraints) if not phrases]
        if free:
            held = [i for i, phrases in enumerate(constraints) if phrases]
            results: list[list[Hypothesis]] = [[] for _ in constraints]
            for rows, part in (
                (free, None),
                (held, [constraints[i] for i in held]),
            ):
                some = None if prefixes is None else [prefixes[i] for i in rows]
                found = _decode_batch(model, src[rows], lengths[rows], vocab, search, some, part)
                for i, hyps in zip(rows, found, strict=True):
                    results[i] = hyps
            return results
    return beam_search_checked(
        *args, search.beam, search.n_best, search.length_penalty, search.controls, prefixes,
        search.early_stopping, constraints,
    )  # fmt: skip
