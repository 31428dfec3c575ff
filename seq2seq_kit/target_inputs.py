"""The target-side inputs of each text to decode, checked and encoded: its target prefix
(:func:`encode_prefixes`), the ids its output must start with, and its lexical constraints
(:func:`encode_constraints`), the phrases its output must hold. Each is tokenized alone by the
target vocabulary and checked against the search that will decode it (a piece the vocabulary
lacks, a banned token, the length cap, a search that cannot force or hold it); errors name
the 1-based input line. :mod:`.decoding` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .errors import (
    CapabilityError,
    ConstraintError,
    OptionError,
    PrefixError,
    describe_token,
    option,
)
from .vocab import Vocabulary

__all__ = ["TargetSearch", "encode_constraints", "encode_prefixes"]


class _Controls(Protocol):
    """What checking target inputs reads of a search's controls
    (:class:`.logits_processing.OutputControls`)."""

    @property
    def banned_ids(self) -> tuple[int, ...]: ...


class TargetSearch(Protocol):
    """What checking target inputs reads of a search: a :class:`seq2seq_kit.decoding.Search`
    (typed by its fields, since this module sits below :mod:`.decoding`, which imports it).

    Attributes:
        max_length: the most tokens an output may hold.
        sampling: the sampling options, or None for a search.
        controls: what every output obeys; ``controls.banned_ids`` are never output.
        takes_prefix: whether the search can force a target prefix.
        takes_constraints: whether the search can hold lexical constraints.
    """

    @property
    def max_length(self) -> int: ...
    @property
    def sampling(self) -> object | None: ...
    @property
    def controls(self) -> _Controls: ...
    @property
    def takes_prefix(self) -> bool: ...
    @property
    def takes_constraints(self) -> bool: ...


def encode_prefixes(
    prefixes: Sequence[str] | None,
    rows: Sequence[Sequence[int] | None],
    vocab: Vocabulary,
    search: TargetSearch,
) -> list[tuple[int, ...]] | None:
    """The target ids each output of ``rows`` (the sources, from :func:`.decoding.encode`)
    must start with: ``prefixes[i]`` (one per row; ``""`` for none) tokenized alone by the
    target ``vocab``. None when no prefix is given (``prefixes`` None, or every one ``""``).
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


def encode_constraints(
    constraints: Sequence[Sequence[str]] | None,
    rows: Sequence[Sequence[int] | None],
    vocab: Vocabulary,
    search: TargetSearch,
) -> list[tuple[tuple[int, ...], ...]] | None:
    """The lexical constraints of each output of ``rows`` (the sources, from
    :func:`.decoding.encode`): ``constraints[i]`` (one list per row; empty for none) are
    target phrases every output of row ``i`` must hold, each tokenized alone by the target
    ``vocab`` (a subword tokenizer marks a phrase's first piece as a word's start, so it
    matches at one). None when no constraint is given. A beam search holds them
    (:func:`.searches.beam_search`), greedy decoding (beam 1) included, which then runs it
    with one hypothesis; phrases that repeat, or that one another holds, count once. A
    phrase longer than the length cap is searched for all the same: its outputs come back
    flagged ``constraints_met=False``.

    Raises:
        ConstraintError: naming the 1-based ``line`` and the constraint's ``number``: not
            one list per row, an empty phrase, a piece the target vocabulary lacks (named),
            a token of ``banned_tokens``, or constraints of a blank source (nothing is
            decoded for it).
        OptionError: constraints with ``sampling``, which draws its outputs (option
            ``sampling``).
        CapabilityError: constraints for an engine without the ``constraints`` capability
            (option ``constraints``).
    """
    if constraints is None:
        return None
    if len(constraints) != len(rows):
        raise ConstraintError(
            f"{len(constraints)} lists for {len(rows)} inputs: give one list of phrases per "
            f"input ([] for none)",
            None,
        )
    if not any(constraints):
        return None
    _check_search_holds(search, next(i for i, p in enumerate(constraints, start=1) if p))
    banned = set(search.controls.banned_ids)
    out = []
    for line, (phrases, row) in enumerate(zip(constraints, rows, strict=True), start=1):
        if not phrases:
            out.append(())
            continue
        if row is None:
            raise ConstraintError("the source is blank: give a source text to constrain", line)
        out.append(
            tuple(
                _phrase_ids(text, vocab, banned, line, number)
                for number, text in enumerate(phrases, start=1)
            )
        )
    return out


def _check_search_holds(search: TargetSearch, line: int) -> None:
    """Refuse constraints, the first on input ``line`` (1-based), to a ``search`` that
    cannot hold them.

    Raises:
        OptionError: ``search`` samples (option ``sampling``).
        CapabilityError: an engine without the ``constraints`` capability.
    """
    if search.sampling is not None:
        raise OptionError(
            f"input line {line} has lexical constraints, which need a search, but "
            f"{option('decode.sampling', True)} draws its outputs at random: turn sampling "
            f"off (a beam of 1 or more holds the constraints)",
            "sampling",
        )
    if not search.takes_constraints:
        raise CapabilityError(
            f"input line {line} has lexical constraints, but the backend decodes with its own "
            f"search, which does not declare the 'constraints' capability; decode without "
            f"constraints or with a backend that steps the decoder (numpy, torch...)",
            "constraints",
        )


def _phrase_ids(
    text: str, vocab: Vocabulary, banned: set[int], line: int, number: int
) -> tuple[int, ...]:
    """The target ids of constraint ``number`` (1-based) of input ``line``, phrase ``text``
    tokenized alone by ``vocab``.

    Raises:
        ConstraintError: ``text`` has no token, or a piece ``vocab`` lacks or one of the
            ``banned`` ids, naming the piece, ``line`` and ``number``.
    """
    pieces = vocab.pieces(text)
    if not pieces:
        raise ConstraintError(f"{text!r} has no target token", line, number)
    ids = []
    for position, piece in enumerate(pieces, start=1):
        what = f"{text!r}: {describe_token(piece, position, vocab.tokenizer_name)}"
        if piece not in vocab:
            raise ConstraintError(f"{what} is not in the model's target vocabulary", line, number)
        token = vocab.token_id(piece)
        if token in banned:
            raise ConstraintError(
                f"{what} is one of the banned tokens ({option('decode.banned_tokens', None)})",
                line,
                number,
            )
        ids.append(token)
    return tuple(ids)
