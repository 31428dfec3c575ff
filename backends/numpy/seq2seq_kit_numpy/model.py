"""The NumPy reference model: the :class:`seq2seq_kit.backend.Model` adapter and training
engine around a network chosen by ``spec.architecture`` (:mod:`.rnn` or
:mod:`.transformer`, one interface), trained with Adam (:mod:`.optimizer`).

Every weight is a view into one flat buffer (and every gradient into another), so the
optimizer updates all of them with a few vectorised operations; the network reads and
writes those views by canonical name (:mod:`seq2seq_kit.weights`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import OptimizerSpec, Spec, TransformerSpec
from seq2seq_kit.weights import (
    check_optimizer_state,
    check_weights,
    initial_weights,
    weight_shapes,
)

from .ema import Ema
from .ops import Dropout
from .optimizer import Adam
from .rnn import RNN
from .transformer import Transformer


class NumpyModel:
    """Encoder-decoder implementing :class:`seq2seq_kit.backend.Model`.

    Args:
        spec: the architecture, a ``ModelSpec`` (RNN) or a ``TransformerSpec``.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` and, with the update count,
            the dropout masks.
        optimizer: Adam settings and label smoothing for :meth:`train_step`, :meth:`loss`
            and :meth:`gradients` (default ``OptimizerSpec()``).
        dtype: compute dtype, ``np.float32`` (default) or ``np.float64`` (for gradient
            checks). Weights cross the API as float32 either way.

    The decoder state handed out by :meth:`encode` and :meth:`step` is the network's own
    (``rnn.DecoderState`` or ``transformer.DecoderState``). Arguments are not checked here:
    ``Backend.create`` returns the model inside :class:`seq2seq_kit.validation.CheckedModel`,
    which does it for every backend.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        dtype=np.float32,
    ):
        self.spec = spec
        self.seed = seed
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.optimizer_spec = optimizer or OptimizerSpec()
        self._shapes = weight_shapes(spec)
        size = sum(math.prod(shape) for shape in self._shapes.values())
        self._flat = np.zeros(size, dtype=self.dtype)
        self._grad_flat = np.zeros(size, dtype=self.dtype)
        self._w: dict[str, np.ndarray] = {}
        self._g: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self._shapes.items():
            n = math.prod(shape)
            self._w[name] = self._flat[offset : offset + n].reshape(shape)
            self._g[name] = self._grad_flat[offset : offset + n].reshape(shape)
            offset += n
        self._accumulated: np.ndarray | None = None  # allocated by the first accumulation
        network = Transformer if isinstance(spec, TransformerSpec) else RNN
        self.network = network(spec, self._w, self._g, self.dtype)
        self.optimizer = Adam(self.optimizer_spec, self._shapes, self.dtype)
        self.ema = Ema(self.optimizer_spec, self._shapes, self.dtype)
        self.set_weights(initial_weights(spec, seed))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch] | Batch) -> float:
        """One Adam step on the concatenation of ``batches`` (a non-empty list; a single
        :class:`Batch` is taken as ``[batch]``): the loss and gradient are the sums of each
        batch's token-weighted share, so the update equals that of one concatenated batch
        (fairseq's ``--update-freq``); clipping applies to the summed gradient. With an
        ``ema_decay``, the moving average takes in the updated weights (:mod:`.ema`). With
        dropout, batch ``i`` draws its masks from ``default_rng((seed, updates so far))``
        for ``i = 0`` and ``default_rng((seed, updates so far, i))`` after. Returns the loss
        (nats per target token, with those masks and label smoothing) before the update."""
        if isinstance(batches, Batch):
            batches = [batches]
        if not batches:
            raise ValueError("train_step needs at least one batch, got an empty list")
        total = sum(float(b.tgt_mask.sum(dtype=np.float64)) for b in batches)
        loss = 0.0
        for position, batch in enumerate(batches):
            loss += self._loss_and_gradients(batch, drop=self._dropout(position), normalizer=total)
            if len(batches) == 1:
                break
            if position == 0:
                if self._accumulated is None:
                    self._accumulated = np.empty_like(self._grad_flat)
                np.copyto(self._accumulated, self._grad_flat)
            else:
                self._accumulated += self._grad_flat
        grads = self._grad_flat if len(batches) == 1 else self._accumulated
        self.optimizer.update(self._flat, grads)
        self.ema.update(self._flat, self.optimizer.t)
        return loss

    def loss(self, batch: Batch) -> float:
        """Mean (label-smoothed) cross-entropy in nats over the positions where
        ``batch.tgt_mask`` is 1 (no dropout)."""
        return self._loss_and_gradients(batch, backward=False)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight for every canonical name, canonical shapes (no
        dropout). The arrays have the model's dtype: float32, or float64 for a
        ``dtype=np.float64`` model (so that finite-difference checks are meaningful).
        Nothing is updated."""
        self._loss_and_gradients(batch)
        return {name: g.copy() for name, g in self._g.items()}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included; no label smoothing, no dropout)."""
        return self.network.log_probs(batch)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> Any:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        state (see the network's ``encode``)."""
        return self.network.encode(src_ids, src_lengths)

    def step(self, prev_ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        return self.network.step(prev_ids, state)

    def reorder(self, state: Any, index: np.ndarray) -> Any:
        """Rows ``index`` (int64 [B']) of every array in ``state``, as a new state."""
        return self.network.reorder(state, index)

    def attention(self, state: Any) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source); None for an ``encode`` state or without attention."""
        return self.network.attention(state)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on."""
        self.optimizer.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies); with an ``ema_decay``, the moving average as
        ``ema/NAME`` too."""
        return {
            **self.optimizer.get_state(),
            "seed": np.array(self.seed, dtype=np.int64),
            **self.ema.state(self._w, self.optimizer.t),
        }

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in
        the saved run); ``ValueError`` naming every missing, unexpected or mis-shaped
        entry, before changing anything."""
        check_optimizer_state(self.spec, state, ema=bool(self.ema.decay))
        state = dict(state)
        self.seed = int(state.pop("seed"))
        self.optimizer.set_state(state)
        self.ema.restore(state)

    def ema_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the moving average of the weights, canonical names and shapes
        (:class:`seq2seq_kit.backend.EmaModel`); the weights before the first update or
        without an ``ema_decay``."""
        return self.ema.weights(self._w, self.optimizer.t)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        return {name: w.astype(np.float32, copy=True) for name, w in self._w.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to the model's dtype). Raises ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        check_weights(self.spec, {name: np.asarray(w) for name, w in weights.items()})
        for name, w in weights.items():
            self._w[name][...] = np.asarray(w, dtype=self.dtype)

    # ------------------------------------------------------------------ training engine

    def _dropout(self, position: int) -> Dropout | None:
        """The mask generator of batch ``position`` of the next update, None without
        dropout."""
        spec = self.spec
        rates = (spec.dropout, getattr(spec, "attention_dropout", 0.0))
        if not any(rates):
            return None
        key = (self.seed, self.optimizer.t) + ((position,) if position else ())
        return Dropout(np.random.default_rng(key), spec.dropout, self.dtype)

    def _loss_and_gradients(
        self,
        batch: Batch,
        backward: bool = True,
        drop: Dropout | None = None,
        normalizer: float | None = None,
    ) -> float:
        """The network's masked, label-smoothed cross-entropy over ``batch`` divided by
        ``normalizer`` (default: its token count); with ``backward`` it also fills the
        gradient buffer."""
        return self.network.loss_and_gradients(
            batch,
            backward=backward,
            drop=drop,
            smoothing=self.optimizer_spec.label_smoothing,
            normalizer=normalizer,
        )
