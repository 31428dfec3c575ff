"""Ensembles: several models decoding as one, each on its own backend.

:class:`Ensemble` is the :class:`~seq2seq_kit.translator.Translator` of an
:class:`~seq2seq_kit.ensemble_model.EnsembleModel` (the members' models as one
:class:`~seq2seq_kit.backend.Model` whose step combines their log-probabilities, re-exported
here), made by :func:`ensemble` from loaded translators or by :func:`load_ensemble` from model
directories, which check that the members can form one (same vocabularies and tokenizers,
each with a decoder step).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .batch import SPECIALS
from .ensemble_model import (
    NOT_ONE_MODEL,
    EnsembleModel,
    EnsembleState,
    bounding_spec,
    normalised_weights,
)
from .errors import CapabilityError, EnsembleError
from .translator import Translator, load
from .vocab import Vocabulary

__all__ = [
    "Ensemble",
    "EnsembleModel",
    "EnsembleState",
    "bounding_spec",
    "ensemble",
    "load_ensemble",
    "normalised_weights",
]


class Ensemble(Translator):
    """A :class:`~seq2seq_kit.translator.Translator` whose model is an
    :class:`EnsembleModel` of other translators' models: it translates, decodes with every
    option and gives attention as one translator does.

    - Vocabularies and tokenizers: the first member's; every member's vocabularies are
      equal on each side and its tokenizers split text alike (checked).
    - Decoding settings: the first member's saved ``[decode]`` table
      (:meth:`decode_config`) and phrase table, as a translator's are its own; its example inputs
      (:attr:`examples`) too. No training record (:attr:`history`, :attr:`validations`
      and :attr:`best_validation` are empty, and ``GET /v1/models`` lists its ``training``
      as null): the members were trained, not the ensemble.
    - Length caps: the smallest saved cap (:attr:`max_length`); a source must fit, and a
      decoding cap is lowered to, what every member can take (:attr:`EnsembleModel.spec`).
    - Capabilities: those every member's backend declares (beam search needs each to
      declare ``beam``); ``backend`` names the members' backends joined by ``+``
      (``"numpy+torch"``).
    - It cannot be saved (:meth:`save` and :meth:`checkpoint` raise
      :class:`~seq2seq_kit.errors.EnsembleError`): it is several models.

    Attributes:
        members: the translators, in order.
        weights: their normalised weights (float, summing to 1).
        names: what messages call each member (its model directory when loaded by
            :func:`load_ensemble`).
    """

    def __init__(
        self,
        members: Sequence[Translator],
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
    ):
        """Raises:
        EnsembleError: as :func:`ensemble`.
        CapabilityError: as :func:`ensemble`.
        """
        members = list(members)
        names = _names(names, len(members))
        check_members(members, names)
        try:
            model = EnsembleModel([m.model for m in members], weights)
        except ValueError as exc:
            raise EnsembleError(f"ensemble weights: {exc}") from None
        first = members[0]
        # the first member's decoding settings and example inputs; no training record: an
        # ensemble was not trained as one
        meta: dict[str, Any] = {}
        decode = (first.meta.get("config") or {}).get("decode")
        if decode:
            meta["config"] = {"decode": decode}
        if first.examples:
            meta["examples"] = list(first.examples)
        super().__init__(
            model,
            first.source_vocab,
            first.target_vocab,
            backend="+".join(m.backend for m in members),
            max_length=min(m.max_length for m in members),
            meta=meta,
        )
        self.phrase_table = first.phrase_table  # what its saved replace_unk_table names
        self.members = tuple(members)
        self.weights = tuple(float(w) for w in model.weights)
        self.names = tuple(names)

    @property
    def capabilities(self) -> frozenset[str]:
        """The capabilities every member's backend declares."""
        return frozenset.intersection(*(m.capabilities for m in self.members))

    def checkpoint(self) -> NoReturn:
        """Raises:
        EnsembleError: always; an ensemble is several models.
        """
        raise EnsembleError(NOT_ONE_MODEL)


def ensemble(
    translators: Sequence[Translator],
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> Ensemble:
    """An :class:`Ensemble` of loaded ``translators`` (each with the backend it was loaded
    with: ``[load(a, backend="numpy"), load(b, backend="torch")]``), weighted by
    ``weights`` (one positive finite number per translator, normalised to sum to 1; None:
    equal), ``names`` (one per translator) naming them in messages (default ``model 1``,
    ``model 2``...).

    Raises:
        EnsembleError: no translator; weights or names not one per translator, or a weight
            that is not a positive finite number, or one negligible beside the largest (see
            :func:`~seq2seq_kit.ensemble_model.normalised_weights`); source or target
            vocabularies that differ (naming the side, the first id whose token differs and
            the two members), or
            tokenizers that split text differently (their kind, the options that change
            how they split and join text, or their files: :func:`_tokenizer_identity`).
        CapabilityError: a member whose backend decodes with its own search (capability
            ``search``, CTranslate2's), which has no decoder step to combine.
    """
    return Ensemble(translators, weights, names)


def load_ensemble(
    paths: Sequence[str | os.PathLike[str]],
    weights: Sequence[float] | None = None,
    backends: str | Sequence[str | None] | None = None,
    *,
    quantization: str | None = None,
) -> Ensemble:
    """Load the model directories ``paths`` (:func:`~seq2seq_kit.translator.load`) as one
    :class:`Ensemble` (:func:`ensemble`), named by their paths in messages. ``backends``:
    None (each as :func:`~seq2seq_kit.translator.load` resolves it), one backend name for
    every model, or one name (or None) per path, in order. ``quantization``: every member
    runs in this scheme (:func:`~seq2seq_kit.translator.load`).

    Raises:
        EnsembleError: ``backends`` not one per path, or as :func:`ensemble`; checked
            before any model is loaded where it can be (counts and weights).
        CheckpointError, BackendError, OutOfMemory: as
            :func:`~seq2seq_kit.translator.load`.
        CapabilityError: as :func:`ensemble`.
    """
    if isinstance(paths, str | os.PathLike):
        raise TypeError("paths must be a sequence of model directories, not one path")
    paths = list(paths)
    if not paths:
        raise EnsembleError("an ensemble needs at least one model directory")
    if backends is None or isinstance(backends, str):
        backends = [backends] * len(paths)
    backends = list(backends)
    if len(backends) != len(paths):
        raise EnsembleError(
            f"{len(backends)} backends for {len(paths)} models: give one backend for every "
            f"model, or one per model, in order"
        )
    try:
        normalised_weights(weights, len(paths))
    except ValueError as exc:
        raise EnsembleError(f"ensemble weights: {exc}") from None
    members = [
        load(p, backend=b, quantization=quantization) for p, b in zip(paths, backends, strict=True)
    ]
    ensembled = Ensemble(members, weights, [str(p) for p in paths])
    ensembled.quantization = quantization
    return ensembled


def _names(names: Sequence[str] | None, count: int) -> list[str]:
    if count == 0:
        raise EnsembleError("an ensemble needs at least one model")
    if names is None:
        return [f"model {i}" for i in range(1, count + 1)]
    if isinstance(names, str) or len(names) != count:
        raise EnsembleError(f"names: give one name per model ({count})")
    return list(names)


def check_members(members: Sequence[Translator], names: Sequence[str]) -> None:
    """Refuse translators that cannot decode as one, naming the first two that differ.

    Raises:
        CapabilityError: a member's backend decodes with its own search (``search``).
        EnsembleError: source or target vocabularies, or tokenizers, that differ.
    """
    for member, name in zip(members, names, strict=True):
        if "search" in member.capabilities:
            raise CapabilityError(
                f"{name}: backend {member.backend!r} decodes with its own search (capability "
                f"'search') and has no decoder step whose log-probabilities an ensemble could "
                f"combine; load that model with a backend that steps the decoder (numpy, "
                f"torch, onnx...)",
                "search",
            )
    first, first_name = members[0], names[0]
    for member, name in zip(members[1:], names[1:], strict=True):
        for side in ("source", "target"):
            _same_vocabulary(
                side,
                getattr(first, f"{side}_vocab"),
                getattr(member, f"{side}_vocab"),
                first_name,
                name,
            )


def _same_vocabulary(side: str, a: Vocabulary, b: Vocabulary, name_a: str, name_b: str) -> None:
    """Raises EnsembleError naming the first difference of two vocabularies of ``side``:
    their tokenizers' kind, splitting options or files, else the first id whose token
    differs."""
    where = f"the {side} sides of {name_a} and {name_b}"
    kind_a, options_a, files_a = _tokenizer_identity(a)
    kind_b, options_b, files_b = _tokenizer_identity(b)
    if kind_a != kind_b:
        raise EnsembleError(f"{where} differ: tokenizer {kind_a!r} against {kind_b!r}")
    if options_a != options_b:
        raise EnsembleError(
            f"{where} differ: tokenizer {kind_a!r} splits text with options {options_a} "
            f"against {options_b}"
        )
    if files_a != files_b:
        differing = sorted(set(files_a) ^ set(files_b)) or sorted(
            f for f in files_a if files_a[f] != files_b[f]
        )
        raise EnsembleError(
            f"{where} differ: tokenizer {kind_a!r} from different files "
            f"({', '.join(differing)}): the same text may split into other pieces"
        )
    if a.tokens == b.tokens:
        return
    at = next(
        (i for i, (x, y) in enumerate(zip(a.tokens, b.tokens, strict=False)) if x != y),
        min(len(a.tokens), len(b.tokens)),
    )

    def token(vocab: Vocabulary) -> str:
        return (
            repr(vocab.tokens[at]) if at < len(vocab.tokens) else "nothing (its last id is before)"
        )

    raise EnsembleError(
        f"{where} differ: the {side} vocabularies ({len(a.tokens) + len(SPECIALS)} and "
        f"{len(b.tokens) + len(SPECIALS)} ids) first differ at id {at + len(SPECIALS)}: "
        f"{token(a)} in {name_a}, {token(b)} in {name_b}; an ensemble combines "
        f"log-probabilities id by id, so every member must have the same vocabularies"
    )


def _tokenizer_identity(vocab: Vocabulary) -> tuple[str, dict[str, Any], dict[str, str]]:
    """What decides how a tokenizer splits and joins text: its kind, its splitting options
    (``splitting_options()``, defaults filled in; all its options for a tokenizer without
    that method) and the SHA-256 of each file it saves (a trained SentencePiece model), by
    file name. Options that only shaped the vocabulary (``word``'s ``min_frequency`` and
    ``max_size``) or the training (SentencePiece's ``vocab_size``) are left out: the
    vocabularies, compared token for token, and the files hold what they decided."""
    tokenizer = vocab.tokenizer
    with tempfile.TemporaryDirectory() as folder:
        names = tokenizer.save(Path(folder), "")
        files = {
            n: hashlib.sha256((Path(folder) / n).read_bytes()).hexdigest() for n in sorted(names)
        }
    splitting = getattr(tokenizer, "splitting_options", None)
    options = splitting() if splitting is not None else tokenizer.options()
    return vocab.tokenizer_name, options, files
