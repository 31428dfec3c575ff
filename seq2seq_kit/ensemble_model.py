"""The step-combining :class:`~seq2seq_kit.backend.Model` of an ensemble.

:class:`EnsembleModel` is a :class:`~seq2seq_kit.backend.Model` for the core's decoder loop
made of the members' models: ``encode`` encodes with each member, ``step`` steps each member
with its own decoder state and combines their log-probabilities, ``reorder`` reorders every
member's state. Greedy decoding, beam search, sampling, prefixes and the output controls
then take an ensemble as they take one model, and the members may run on different backends
(a PyTorch model beside a NumPy one): the core sees NumPy arrays from each. The
:class:`~seq2seq_kit.translator.Translator` made of one, and the checks that its members can
form one, are :mod:`seq2seq_kit.ensemble`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Model
from .batch import Batch
from .errors import EnsembleError
from .spec import Spec, max_source_tokens

__all__ = [
    "NOT_ONE_MODEL",
    "EnsembleModel",
    "EnsembleState",
    "bounding_spec",
    "normalised_weights",
]


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
        raise EnsembleError(NOT_ONE_MODEL)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Raises EnsembleError: an ensemble has no one set of weights."""
        raise EnsembleError(NOT_ONE_MODEL)

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
NOT_ONE_MODEL = (
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
