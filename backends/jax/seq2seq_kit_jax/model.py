"""The JAX model: :mod:`.rnn` behind the :class:`seq2seq_kit.backend.Model` protocol,
trained with :func:`jax.value_and_grad` and the clipped Adam of :mod:`.optimizer`.

Weights are a dict of canonical names to float32 device arrays, the pytree the compiled
functions take and differentiate, so ``get_weights``/``set_weights`` only convert.

Compiled functions are built once per architecture and shared by every model of it
(:func:`compiled`). To keep XLA from recompiling for every batch shape, the batch, source
and target axes are padded up to powers of two, at least 8 (:func:`bucket`):
extra rows have source length 0 and target mask 0, extra positions are masked, so padding
changes no result. The source axis is first cut to the longest real source, the target
axis (for the loss) to the last position with a nonzero mask.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import ModelSpec, OptimizerSpec
from seq2seq_kit.weights import (
    check_optimizer_state,
    check_weights,
    initial_weights,
    weight_shapes,
)

from . import rnn
from .attention import Memory
from .optimizer import Hyper, flatten, step_scalars, unflatten, update
from .rnn import Arrays, LayerState

#: Smallest padded size of the batch and time axes: small batches (the seed task trains
#: on pairs) then share one compilation; the padding costs little next to dispatch.
MIN_BUCKET = 8


def bucket(n: int) -> int:
    """The padded size of an axis of ``n``: the smallest power of two >= ``n``, at least
    :data:`MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(0, n - 1).bit_length())


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`JaxModel.encode` and :meth:`JaxModel.step`.

    Device arrays have a padded batch axis (``bucket(size)`` rows); only the first ``size``
    rows are real.

    Attributes:
        layers: one state per decoder layer, bottom first: ``(h, c)`` for the LSTM, ``(h,)``
            for the GRU, [B', H] each.
        memory: the attention :class:`Memory` ([B', S', H], S' the padded source width),
            None without attention.
        weights: [B', S'] attention weights of the step that produced this state; None from
            ``encode`` or without attention.
        size: the real batch size B.
        source_width: S, the width of the ``src_ids`` encoded.
    """

    layers: tuple[LayerState, ...]
    memory: Memory | None
    weights: jax.Array | None
    size: int
    source_width: int


class Functions(NamedTuple):
    """The compiled functions of one architecture (see :func:`compiled`)."""

    loss_and_gradients: object
    log_probs: object
    encode: object
    step: object


@functools.lru_cache(maxsize=64)
def compiled(spec: ModelSpec) -> Functions:
    """Jitted pure functions for ``spec`` (cached: models of one architecture share their
    compilations).

    ``loss_and_gradients(params, batch, key_data, step, rate)`` serves ``train_step``,
    ``gradients`` and ``loss`` alike, so each batch shape compiles one backward pass: with
    dropout in the spec, masks are drawn from ``fold_in(key, step)`` at the traced ``rate``,
    and ``rate = 0`` keeps every unit with scale 1 (exactly no dropout)."""

    def loss(params, batch, key_data, step, rate):
        drop = None
        if spec.dropout > 0.0:
            key = jax.random.wrap_key_data(key_data, impl="threefry2x32")
            drop = rnn.dropout(jax.random.fold_in(key, step), rate)
        return rnn.loss(spec, params, batch, drop)

    def log_probs(params, batch):
        return rnn.log_probs(spec, params, batch)

    def encode(params, src_ids, src_lengths):
        return rnn.encode(spec, params, src_ids, src_lengths)

    def step(params, prev_ids, layers, mem):
        logp, layers, probs = rnn.decode(spec, params, prev_ids[:, None], layers, mem)
        return logp[:, 0], layers, None if probs is None else probs[:, 0]

    return Functions(
        loss_and_gradients=jax.jit(jax.value_and_grad(loss)),
        log_probs=jax.jit(log_probs),
        encode=jax.jit(encode),
        step=jax.jit(step),
    )


#: One Adam step (pure, :func:`.optimizer.update`); compiled once per weight layout.
_adam = jax.jit(update, static_argnums=0)


@jax.jit
def _take_rows(tree, index):
    """Rows ``index`` of every array in ``tree`` (beam search's reorder)."""
    return jax.tree.map(lambda a: a[index], tree)


def _seed_key_data(seed: int) -> np.ndarray:
    """Threefry key data (uint32 [2]: high and low 32 bits) of any Python int seed, taken
    modulo 2**64; for 0 <= seed < 2**32 the key ``jax.random.key(seed)`` makes."""
    seed %= 1 << 64
    return np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)


class JaxModel:
    """RNN encoder-decoder implementing :class:`seq2seq_kit.backend.Model` in JAX.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights` and, with the update count,
            the dropout masks (``fold_in(key(seed), step)``).
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).

    The decoder state handed out by :meth:`encode` and :meth:`step` is a
    :class:`DecoderState`. Arguments are not checked here: ``Backend.create`` returns the
    model inside :class:`seq2seq_kit.validation.CheckedModel`, which does it for every
    backend (JAX would clamp an out-of-range gather index silently).
    """

    def __init__(self, spec: ModelSpec, *, seed: int = 0, optimizer: OptimizerSpec | None = None):
        self.spec = spec
        self.seed = int(seed)
        self.optimizer_spec = optimizer or OptimizerSpec()
        self._hyper = Hyper.of(self.optimizer_spec)
        self._fn = compiled(spec)
        self._shapes = weight_shapes(spec)
        self.learning_rate = float(self.optimizer_spec.learning_rate)
        self.steps = 0
        self._params: dict[str, jax.Array] = {}
        self.set_weights(initial_weights(spec, self.seed))
        size = sum(math.prod(shape) for shape in self._shapes.values())
        self._m = self._v = jnp.zeros(size, jnp.float32)  # flat: see optimizer.update

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batches: list[Batch]) -> float:
        (batch,) = batches if isinstance(batches, list) else [batches]  # TODO accumulate
        """One clipped Adam step on ``batch`` (with dropout if ``spec.dropout`` > 0, masks
        drawn from ``(seed, updates so far)``); returns the loss before it."""
        value, grads = self._loss_and_gradients(batch, self.spec.dropout)
        lr_scale, bias2_root = step_scalars(self._hyper, self.learning_rate, self.steps + 1)
        self._params, self._m, self._v = _adam(
            self._hyper, self._params, grads, self._m, self._v, lr_scale, bias2_root
        )
        self.steps += 1
        return float(value)

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1 (no
        dropout). Runs the compiled backward pass too: one compilation per batch shape
        serves training, gradients and loss."""
        return float(self._loss_and_gradients(batch)[0])

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight, float32, for every canonical name. Nothing is updated."""
        grads = self._loss_and_gradients(batch)[1]
        return {name: np.array(grads[name], dtype=np.float32) for name in self._shapes}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        arrays = self._arrays(batch, trim_target=False)
        out = self._fn.log_probs(self._params, arrays)
        size, steps = batch.tgt_in.shape
        return np.array(out[:size, :steps], dtype=np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        :class:`DecoderState`: per layer the encoder's state after ``src_lengths[b]`` tokens
        (zero for length 0; forward and reverse halves concatenated when bidirectional), and
        the attention memory."""
        size = src_ids.shape[0]
        src, lengths = _pad_source(src_ids, src_lengths, bucket(size))
        layers, mem = self._fn.encode(self._params, src, lengths)
        return DecoderState(layers, mem, None, size, src_ids.shape[1])

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        rows = state.layers[0][0].shape[0]
        prev = np.zeros(rows, dtype=np.int32)
        prev[: state.size] = prev_ids
        logp, layers, weights = self._fn.step(self._params, prev, state.layers, state.memory)
        out = np.array(logp[: state.size], dtype=np.float32)
        return out, state._replace(layers=layers, weights=weights)

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of ``state``, as a new state."""
        padded = np.zeros(bucket(index.shape[0]), dtype=np.int32)
        padded[: index.shape[0]] = index
        layers, mem, weights = _take_rows((state.layers, state.memory, state.weights), padded)
        return DecoderState(layers, mem, weights, index.shape[0], state.source_width)

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the width
        of the encoded ``src_ids``; 0 past each source's length, rows summing to 1, or all 0
        for an empty source); None for an ``encode`` state or without attention."""
        if state.weights is None:
            return None
        # rows past state.size are the batch bucket's padding
        return attention_at_width(np.asarray(state.weights)[: state.size], state.source_width)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from the next :meth:`train_step` on (finite, >= 0)."""
        learning_rate = float(learning_rate)
        if not math.isfinite(learning_rate) or learning_rate < 0.0:
            raise ValueError(f"learning_rate must be finite and >= 0, got {learning_rate}")
        self.learning_rate = learning_rate

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state: ``step`` (int64 scalar), ``learning_rate`` (float64 scalar),
        ``seed`` (int64 scalar: the dropout seed) and float32 ``m/NAME``, ``v/NAME`` for
        every canonical weight NAME (copies)."""
        state = {
            "step": np.array(self.steps, dtype=np.int64),
            "learning_rate": np.array(self.learning_rate, dtype=np.float64),
            "seed": np.array(self.seed, dtype=np.int64),
        }
        m, v = unflatten(self._m, self._params), unflatten(self._v, self._params)
        for name in self._shapes:
            state[f"m/{name}"] = np.array(m[name], dtype=np.float32)
            state[f"v/{name}"] = np.array(v[name], dtype=np.float32)
        return state

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (the dropout seed too, so masks continue as in the
        saved run); ``ValueError`` naming every missing, unexpected or mis-shaped entry,
        before changing anything."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        check_optimizer_state(self.spec, arrays)
        self._m = flatten({n: arrays[f"m/{n}"] for n in self._shapes})
        self._v = flatten({n: arrays[f"v/{n}"] for n in self._shapes})
        self.steps = int(arrays["step"])
        self.learning_rate = float(arrays["learning_rate"])
        self.seed = int(arrays["seed"])

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

    def _loss_and_gradients(self, batch: Batch, rate: float = 0.0):
        """``(loss, gradients)`` as device values, with dropout at ``rate`` (masks drawn
        from ``(seed, updates so far)``)."""
        return self._fn.loss_and_gradients(
            self._params,
            self._arrays(batch, trim_target=True),
            _seed_key_data(self.seed),
            np.uint32(self.steps % (1 << 32)),
            np.float32(rate),
        )

    def _arrays(self, batch: Batch, trim_target: bool) -> Arrays:
        """``batch`` padded to bucket sizes. With ``trim_target`` the target axis is first cut
        after its last position with a nonzero mask (the decoder is causal: later positions
        change neither loss nor gradient)."""
        src_ids, src_lengths = batch.src_ids, batch.src_lengths
        tgt_in, tgt_out, mask = batch.tgt_in, batch.tgt_out, batch.tgt_mask
        size, steps = tgt_in.shape
        if trim_target:
            used = np.flatnonzero(mask.any(axis=0))
            steps = int(used[-1]) + 1 if used.size else 0
        rows, width = bucket(size), bucket(steps)
        src, lengths = _pad_source(src_ids, src_lengths, rows)
        padded_in = np.zeros((rows, width), dtype=np.int32)
        padded_out = np.zeros((rows, width), dtype=np.int32)
        padded_mask = np.zeros((rows, width), dtype=np.float32)
        padded_in[:size, :steps] = tgt_in[:, :steps]
        padded_out[:size, :steps] = tgt_out[:, :steps]
        padded_mask[:size, :steps] = mask[:, :steps]
        return Arrays(src, lengths, padded_in, padded_out, padded_mask)


def _device(array: np.ndarray) -> jax.Array:
    """A float32 device copy (never aliasing the caller's buffer)."""
    return jnp.array(np.asarray(array, dtype=np.float32), copy=True)


def _pad_source(src_ids: np.ndarray, src_lengths: np.ndarray, rows: int):
    """Sources cut to the longest real one, then padded to ``rows`` x a bucketed width
    (padded rows have length 0; the fill id is masked, so any id serves)."""
    size = src_ids.shape[0]
    longest = int(src_lengths.max()) if size else 0
    src = np.zeros((rows, bucket(longest)), dtype=np.int32)
    src[:size, :longest] = src_ids[:, :longest]
    lengths = np.zeros(rows, dtype=np.int32)
    lengths[:size] = src_lengths
    return src, lengths
