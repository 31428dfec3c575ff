"""The JAX model: the networks of :mod:`.rnn` and :mod:`.transformer` behind the
:class:`seq2seq_kit.backend.Model` protocol, trained with :func:`jax.value_and_grad` and the
clipped Adam of :mod:`.optimizer`; decoding is :mod:`.decoding`'s.

Weights are a dict of canonical names to float32 device arrays, the pytree the compiled
functions take and differentiate, so ``get_weights``/``set_weights`` only convert.

Training compiles one function per architecture (:func:`compiled`) and batch bucket
(:mod:`.padding`): the summed label-smoothed token loss and its gradient. ``train_step``
adds them up over the batches it is given and divides by their real target positions
inside the Adam update, so an update from several batches is the update from their
concatenation (fairseq's ``--update-freq``) whatever their sizes.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import OptimizerSpec, Spec, TransformerSpec
from seq2seq_kit.weights import (
    check_optimizer_state,
    check_weights,
    initial_weights,
    weight_shapes,
)

from . import ema, rnn, transformer
from .decoding import decoder
from .dropout import Dropout
from .loss import summed_loss
from .optimizer import Hyper, flatten, step_scalars, unflatten, update
from .padding import pad_batch


@functools.lru_cache(maxsize=64)
def compiled(spec: Spec):
    """``loss_and_gradients(params, arrays, key_data, updates, position, train, smoothing)``
    for ``spec``, jitted (cached: models of one architecture share their compilations):
    the summed label-smoothed token loss of a padded batch (:func:`.loss.summed_loss`,
    ``smoothing`` its epsilon) and its gradient.

    One function serves ``train_step``, ``gradients`` and ``loss`` alike, so each batch
    shape compiles one backward pass: with dropout in the spec, masks are drawn from the
    seed's key folded with ``updates`` (taken so far) and ``position`` (the batch's place
    in the accumulation list) at the spec's rates times ``train``; ``train = 0`` keeps every
    unit with scale 1 (exactly no dropout)."""
    transformer_spec = isinstance(spec, TransformerSpec)
    attention_rate = spec.attention_dropout if transformer_spec else 0.0
    rates = (spec.dropout, attention_rate)

    def loss(params, arrays, key_data, updates, position, train, smoothing):
        key = jax.random.wrap_key_data(key_data, impl="threefry2x32")
        key = jax.random.fold_in(jax.random.fold_in(key, updates), position)
        units, weights = (
            Dropout(jax.random.fold_in(key, i), rate * train) if rate > 0.0 else None
            for i, rate in enumerate(rates)
        )
        if transformer_spec:
            drops = transformer.Dropouts(units, weights)
            logp = transformer.forward(spec, params, arrays, drops)
        else:
            logp = rnn.forward(spec, params, arrays, units)
        return summed_loss(logp, arrays.tgt_out, arrays.tgt_mask, smoothing)

    return jax.jit(jax.value_and_grad(loss))


@functools.lru_cache(maxsize=64)
def _log_probs(spec: Spec):
    network = transformer if isinstance(spec, TransformerSpec) else rnn
    return jax.jit(functools.partial(network.forward, spec))


#: One Adam step (pure, :func:`.optimizer.update`); compiled once per weight layout.
_adam = jax.jit(update, static_argnums=0)


@jax.jit
def _add(a, b):
    """Elementwise sum of two gradient dicts (accumulation)."""
    return jax.tree.map(jnp.add, a, b)


def _seed_key_data(seed: int) -> np.ndarray:
    """Threefry key data (uint32 [2]: high and low 32 bits) of any Python int seed, taken
    modulo 2**64; for 0 <= seed < 2**32 the key ``jax.random.key(seed)`` makes."""
    seed %= 1 << 64
    return np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)


def _tokens(batch: Batch) -> float:
    """The real target positions of ``batch``: the sum of its mask."""
    return float(np.sum(batch.tgt_mask, dtype=np.float64))


class JaxModel:
    """An RNN (``ModelSpec``) or Transformer (``TransformerSpec``) encoder-decoder
    implementing :class:`seq2seq_kit.backend.Model` in JAX.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` and, with the update count
            and the batch's place in the accumulation list, the dropout masks.
        optimizer: Adam and label-smoothing settings (default ``OptimizerSpec()``).

    The decoder state handed out by :meth:`encode` and :meth:`step` is a
    :class:`.decoding.RnnState` or :class:`.decoding.TransformerState`. Arguments are not
    checked here: ``Backend.create`` returns the model inside
    :class:`seq2seq_kit.validation.CheckedModel`, which does it for every backend (JAX
    would clamp an out-of-range gather index silently).
    """

    def __init__(self, spec: Spec, *, seed: int = 0, optimizer: OptimizerSpec | None = None):
        self.spec = spec
        self.seed = int(seed)
        self.optimizer_spec = optimizer or OptimizerSpec()
        self._hyper = Hyper.of(self.optimizer_spec)
        self._smoothing = np.float32(self.optimizer_spec.label_smoothing)
        self._loss_and_gradients = compiled(spec)
        self._decoder = decoder(spec)
        self._shapes = weight_shapes(spec)
        self.learning_rate = float(self.optimizer_spec.learning_rate)
        self.steps = 0
        self._params: dict[str, jax.Array] = {}
        self.set_weights(initial_weights(spec, self.seed))
        size = sum(math.prod(shape) for shape in self._shapes.values())
        self._m = self._v = jnp.zeros(size, jnp.float32)  # flat: see optimizer.update
        # the moving average of ema_decay, flat as the moments (see .ema)
        self._ema = jnp.zeros(size if self.optimizer_spec.ema_decay else 0, jnp.float32)

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch]) -> float:
        """One clipped Adam step from the non-empty list ``batches``: the gradient of the
        mean label-smoothed token loss over all their real target positions (with dropout
        if the spec asks, masks drawn from ``(seed, updates so far, place in the list)``).
        Returns that mean loss, before the update. With an ``ema_decay``, the moving
        average takes in the updated weights (:mod:`.ema`)."""
        total_loss, total_grads = 0.0, None
        for position, batch in enumerate(batches):
            value, grads = self._summed(batch, position, train=True)
            total_loss += float(value)
            total_grads = grads if total_grads is None else _add(total_grads, grads)
        scale = 1.0 / max(sum(_tokens(b) for b in batches), 1.0)
        lr_scale, bias2_root = step_scalars(self._hyper, self.learning_rate, self.steps + 1)
        self._params, self._m, self._v = _adam(
            self._hyper,
            self._params,
            total_grads,
            self._m,
            self._v,
            np.float32(scale),
            lr_scale,
            bias2_root,
        )
        self.steps += 1
        if self.optimizer_spec.ema_decay:
            keep, take = ema.factors(self.optimizer_spec.ema_decay, self.steps)
            frozen = self._hyper.frozen
            self._ema = ema.update(frozen, self._ema, self._params, keep, take)
        return total_loss * scale

    def loss(self, batch: Batch) -> float:
        """Mean label-smoothed cross-entropy in nats over the positions where
        ``batch.tgt_mask`` is 1 (no dropout). Runs the compiled backward pass too: one
        compilation per batch shape serves training, gradients and loss."""
        value = float(self._summed(batch)[0])
        return value / max(_tokens(batch), 1.0)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight, float32, for every canonical name. Nothing is updated."""
        grads = self._summed(batch)[1]
        scale = np.float32(1.0 / max(_tokens(batch), 1.0))
        return {name: np.asarray(grads[name], dtype=np.float32) * scale for name in self._shapes}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included; no label smoothing, no dropout)."""
        out = _log_probs(self.spec)(self._params, pad_batch(batch, trim_target=False))
        size, steps = batch.tgt_in.shape
        return np.array(out[:size, :steps], dtype=np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray):
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        state (see :mod:`.decoding`)."""
        return self._decoder.encode(self._params, src_ids, src_lengths)

    def step(self, prev_ids: np.ndarray, state) -> tuple[np.ndarray, object]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        return self._decoder.step(self._params, prev_ids, state)

    def reorder(self, state, index: np.ndarray):
        """Rows ``index`` (int64 [B']) of ``state``, as a new state."""
        return self._decoder.reorder(state, index)

    def attention(self, state) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the width
        of the encoded ``src_ids``; 0 past each source's length, rows summing to 1, or all 0
        for an empty source): for a Transformer the top decoder layer's cross-attention
        averaged over heads. None for an ``encode`` state or an RNN without attention."""
        return self._decoder.attention(state)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on (finite, >= 0)."""
        learning_rate = float(learning_rate)
        if not math.isfinite(learning_rate) or learning_rate < 0.0:
            raise ValueError(f"learning_rate must be finite and >= 0, got {learning_rate}")
        self.learning_rate = learning_rate

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies); with an ``ema_decay``, the moving average as
        ``ema/NAME`` too."""
        state = {
            "step": np.array(self.steps, dtype=np.int64),
            "learning_rate": np.array(self.learning_rate, dtype=np.float64),
            "seed": np.array(self.seed, dtype=np.int64),
        }
        m, v = unflatten(self._m, self._params), unflatten(self._v, self._params)
        for name in self._shapes:
            state[f"m/{name}"] = np.array(m[name], dtype=np.float32)
            state[f"v/{name}"] = np.array(v[name], dtype=np.float32)
        if self.optimizer_spec.ema_decay:
            state.update({f"ema/{name}": w for name, w in self.ema_weights().items()})
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in the
        saved run); ``ValueError`` naming every missing, unexpected or mis-shaped entry,
        before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        averaged = bool(self.optimizer_spec.ema_decay)
        check_optimizer_state(self.spec, arrays, ema=averaged)
        self._m = flatten({n: arrays[f"m/{n}"] for n in self._shapes})
        self._v = flatten({n: arrays[f"v/{n}"] for n in self._shapes})
        if averaged:
            self._ema = flatten({n: arrays[f"ema/{n}"] for n in self._shapes})
        self.steps = int(arrays["step"])
        self.learning_rate = float(arrays["learning_rate"])
        self.seed = int(arrays["seed"])

    def ema_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the moving average of the weights, canonical names and shapes
        (:class:`seq2seq_kit.backend.EmaModel`); the weights before the first update or
        without an ``ema_decay``."""
        if not self.optimizer_spec.ema_decay or not self.steps:
            return self.get_weights()
        average = unflatten(self._ema, self._params)
        return {name: np.array(average[name], dtype=np.float32) for name in self._shapes}

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        return {name: np.array(self._params[name], dtype=np.float32) for name in self._shapes}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to float32). Raises ``ValueError`` naming any missing,
        unexpected or mis-shaped weight, before changing anything."""
        weights = {name: np.asarray(w) for name, w in weights.items()}
        check_weights(self.spec, weights)
        self._params = {name: _device(weights[name]) for name in self._shapes}

    # ------------------------------------------------------------------ internals

    def _summed(self, batch: Batch, position: int = 0, train: bool = False):
        """``(summed token loss, its gradient)`` of ``batch`` as device values, with dropout
        when ``train`` (masks from ``(seed, updates so far, position)``)."""
        return self._loss_and_gradients(
            self._params,
            pad_batch(batch, trim_target=True),
            _seed_key_data(self.seed),
            np.uint32(self.steps % (1 << 32)),
            np.uint32(position),
            np.float32(train),
            self._smoothing,
        )


def _device(array: np.ndarray) -> jax.Array:
    """A float32 device copy (never aliasing the caller's buffer)."""
    return jnp.array(np.asarray(array, dtype=np.float32), copy=True)
