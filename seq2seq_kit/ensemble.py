"""Ensembles: several models decoding as one, each on its own backend.

:class:`EnsembleModel` is a :class:`~seq2seq_kit.backend.Model` for the core's decoder loop
made of the members' models: ``encode`` encodes with each member, ``step`` steps each member
with its own decoder state and combines their log-probabilities, ``reorder`` reorders every
member's state. Greedy decoding, beam search, sampling, prefixes and the output controls
then take an ensemble as they take one model, and the members may run on different backends
(a PyTorch model beside a NumPy one): the core sees NumPy arrays from each.
:class:`Ensemble` is the :class:`~seq2seq_kit.translator.Translator` of one, made by
:func:`ensemble` from loaded translators or by :func:`load_ensemble` from model directories,
which check that the members can form one (same vocabularies and tokenizers, each with a
decoder step).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .backend import Model
from .batch import SPECIALS, Batch
from .errors import CapabilityError, EnsembleError
from .spec import Spec, max_source_tokens
from .translator import Translator, load
from .vocab import Vocabulary

__all__ = ["Ensemble", "EnsembleModel", "EnsembleState", "ensemble", "load_ensemble"]


@dataclass(frozen=True)
class EnsembleState:
    """The decoder state of an :class:`EnsembleModel`: one state per member, each opaque
    and handed back only to its own member (immutable, as every state)."""

    members: tuple[Any, ...]


class EnsembleModel:
    """The members' models as one decoding :class:`~seq2seq_kit.backend.Model` (``encode``,
    ``step``, ``reorder``, ``attention``, ``log_probs``).

    At each step the ensemble's log-probability of token ``y`` is the weighted mean of the
    members' (float32 [B, V])::

        log p(y) = sum_i w_i * log p_i(y),   w_i > 0, sum_i w_i = 1

    the weights normalised to sum to 1 (Marian's ``--weights``, a weighted sum of its
    scorers' log-probabilities; OpenNMT-py's ensemble, the mean of its models'). It is not
    renormalised: a hypothesis's score is the weighted mean of the scores each member gives
    it, so an ensemble of a model with itself is that model, the scores of an ensemble read
    on its members' scale, and a score still only falls as tokens are added (beam search's
    stopping bounds hold; sampling renormalises what it draws from). fairseq's
    ``EnsembleModel`` averages probabilities instead (``logsumexp_i(log p_i) - log n``, a
    mixture, where a token one member rules out keeps the others' probability); the mean
    of log-probabilities is a product of experts, where a token is likely only if every
    member finds it likely, and costs no ``exp`` or ``log`` over [B, V] per member and step.

    Attention (:meth:`attention`) is the weighted mean of the members that have attention,
    their weights renormalised among them. ``log_probs`` (teacher forcing) combines as
    ``step`` does; training and the weights are each member's own (those methods raise
    :class:`~seq2seq_kit.errors.EnsembleError`).

    Attributes:
        members: the members' models (each checked by its own backend's
            :class:`~seq2seq_kit.validation.CheckedModel`).
        weights: float64 [n], the normalised weights, one per member.
        spec: the spec of the member that bounds the ensemble: the shortest source a
            member can encode (a Transformer's ``max_positions``), and among equals the
            first with attention, else the first. The core's checks read it: a source
            within its limit, and a decoding cap within it, fit every member; it has
            attention when a member has (a Transformer always has).
    """

    def __init__(self, members: Sequence[Model], weights: Sequence[float] | None = None):
        """Raises:
        ValueError: no member, or ``weights`` not one positive finite number per member.
        """
        if not members:
            raise ValueError("EnsembleModel: no member")
        self.members: tuple[Model, ...] = tuple(members)
        self.weights = normalised_weights(weights, len(self.members))
        self._weights32 = self.weights.astype(np.float32)
        self.spec: Spec = bounding_spec([m.spec for m in self.members])
        self._attending = [i for i, m in enumerate(self.members) if m.spec.has_attention]

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> EnsembleState:
        """Each member's ``encode`` of int32 [B, S] ids with int32 [B] lengths."""
        return EnsembleState(tuple(m.encode(src_ids, src_lengths) for m in self.members))

    def step(self, prev_ids: np.ndarray, state: EnsembleState) -> tuple[np.ndarray, EnsembleState]:
        """Each member's ``step`` of int32 [B] ids on its own state: (float32 [B, V], the
        weighted mean of the members' log-probabilities (see the class docstring), the new
        state)."""
        states = []
        combined = None
        for model, weight, member_state in zip(
            self.members, self._weights32, state.members, strict=True
        ):
            log_probs, new = model.step(prev_ids, member_state)
            states.append(new)
            # a new array: a member's own log-probabilities are never written to
            scaled = np.multiply(log_probs, weight, dtype=np.float32)
            combined = scaled if combined is None else np.add(combined, scaled, out=combined)
        return combined, EnsembleState(tuple(states))

    def reorder(self, state: EnsembleState, index: np.ndarray) -> EnsembleState:
        """Each member's ``reorder`` of its state by int64 [B'] ``index``."""
        return EnsembleState(
            tuple(m.reorder(s, index) for m, s in zip(self.members, state.members, strict=True))
        )

    def attention(self, state: EnsembleState) -> np.ndarray | None:
        """float32 [B, S]: the weighted mean of the attention weights of the members that
        return them, their weights renormalised among them (rows still sum to 1, or 0 for
        an empty source); None when none does (no member has attention, or a state
        straight from ``encode``)."""
        total, mass = None, 0.0
        for i in self._attending:
            weights = self.members[i].attention(state.members[i])
            if weights is None:
                continue
            scaled = np.asarray(weights, dtype=np.float64) * self.weights[i]
            total = scaled if total is None else total + scaled
            mass += self.weights[i]
        return None if total is None else (total / mass).astype(np.float32)

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V]: the weighted mean of the
        members' (as :meth:`step` combines them)."""
        combined = None
        for model, weight in zip(self.members, self._weights32, strict=True):
            scaled = np.multiply(model.log_probs(batch), weight, dtype=np.float32)
            combined = scaled if combined is None else np.add(combined, scaled, out=combined)
        return combined

    def get_weights(self) -> dict[str, np.ndarray]:
        """Raises EnsembleError: an ensemble has no one set of weights."""
        raise EnsembleError(_NOT_ONE_MODEL)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Raises EnsembleError: an ensemble has no one set of weights."""
        raise EnsembleError(_NOT_ONE_MODEL)

    def train_step(self, batches: list[Batch], total_tokens: int | None = None) -> float:
        """Raises EnsembleError: train each member on its own."""
        raise EnsembleError(_DECODES_ONLY)

    def loss(self, batch: Batch) -> float:
        """Raises EnsembleError: training's loss is one model's."""
        raise EnsembleError(_DECODES_ONLY)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """Raises EnsembleError: train each member on its own."""
        raise EnsembleError(_DECODES_ONLY)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Raises EnsembleError: train each member on its own."""
        raise EnsembleError(_DECODES_ONLY)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Raises EnsembleError: train each member on its own."""
        raise EnsembleError(_DECODES_ONLY)

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Raises EnsembleError: train each member on its own."""
        raise EnsembleError(_DECODES_ONLY)


_DECODES_ONLY = "an ensemble decodes only: train each member on its own"
_NOT_ONE_MODEL = (
    "an ensemble is several models, not one set of weights: save or read each member's "
    "(Ensemble.members), or average checkpoints of one run into one model (seq2seq-kit "
    "average)"
)


def normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    """float64 [count]: ``weights`` divided by their sum (None: equal weights), each finite
    and above 0 in float32 too (the precision :class:`EnsembleModel` steps in), summing to 1.

    The weights are divided by the largest before they are summed, so that weights whose
    sum overflows (``[1e308, 1e308]``) still give their shares (``[0.5, 0.5]``) rather than
    ``inf`` and then zeros.

    Raises:
        ValueError: not ``count`` weights, one that is not a positive finite number, or one
            so small beside the largest that its share rounds to 0 in float32 (naming its
            position).
    """
    if weights is None:
        return np.full(count, 1.0 / count)
    if isinstance(weights, str) or len(weights) != count:
        given = "one string" if isinstance(weights, str) else f"{len(weights)} weights"
        raise ValueError(f"{given} for {count} models: give one weight per model, in order")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating):
            raise ValueError(f"weights[{i}] = {w!r} is not a number")
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"weights[{i}] = {w!r}: a weight must be a finite number above 0")
    values = np.asarray(weights, dtype=np.float64)
    # each in (0, 1], the largest 1: the sum lies in [1, count], far from overflow
    scaled = values / values.max()
    shares = scaled / math.fsum(scaled)
    largest = int(values.argmax())
    for i, share in enumerate(shares):
        # a share that is 0 (or subnormal) in float32 would drop that model from every step
        # unseen, and 0 * -inf log-probabilities would be NaN
        if not share.astype(np.float32) >= np.finfo(np.float32).tiny:
            raise ValueError(
                f"weights[{i}] = {weights[i]!r} is negligible beside weights[{largest}] = "
                f"{weights[largest]!r}: its share, {share:.3g}, is below float32's smallest "
                f"normal number; raise it or leave that model out"
            )
    assert math.isclose(math.fsum(shares), 1.0, rel_tol=1e-12), shares
    return shares


def bounding_spec(specs: Sequence[Spec]) -> Spec:
    """The spec of :attr:`EnsembleModel.spec`: the shortest source limit (None, an RNN's,
    is no limit), then attention, then the first."""

    def key(i: int) -> tuple[float, bool, int]:
        limit = max_source_tokens(specs[i])
        return (math.inf if limit is None else limit, not specs[i].has_attention, i)

    return specs[min(range(len(specs)), key=key)]


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
        raise EnsembleError(_NOT_ONE_MODEL)


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
            :func:`normalised_weights`); source or target vocabularies that differ
            (naming the side, the first id whose token differs and the two members), or
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
