"""The NumPy reference model: an LSTM encoder-decoder (Sutskever et al. 2014) in the
canonical weight layout of :mod:`seq2seq_kit.weights`, trained with Adam.

Every weight is a view into one flat buffer (and every gradient into another), so the
optimizer updates all of them with a few vectorised operations. Inside, sequences are
time-major (``[T, B, ...]``); the batch arrays are transposed once on the way in.
"""

from __future__ import annotations

import math

import numpy as np

from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import ModelSpec, OptimizerSpec
from seq2seq_kit.weights import check_weights, initial_weights, weight_shapes

from . import lstm
from .optimizer import Adam

#: Vocabularies up to this size scatter gradient rows with a one-hot matmul (BLAS); larger
#: ones de-duplicate ids and use ``np.add.at`` only for repeats. Measured with NumPy 2.4 on
#: 2 cores: the matmul wins below a few hundred rows, ``np.add.at`` above.
ONE_HOT_SCATTER_MAX_ROWS = 128

State = tuple[tuple[np.ndarray, np.ndarray], ...]


def log_softmax(logits: np.ndarray, with_probs: bool = False):
    """Numerically stable ``log softmax`` over the last axis: ``z - m - log(sum(exp(z - m)))``
    with ``m`` the row maximum, so no ``exp`` overflows. With ``with_probs``, returns
    ``(log_probs, probs)``, the softmax reusing the same ``exp`` (for the backward pass)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    shifted -= np.log(total)
    if with_probs:
        exp /= total
        return shifted, exp
    return shifted


def scatter_add_rows(ids: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[ids[n]] += values[n]`` for all n, into a fresh zero [num_rows, D] array: the
    gradient of a row gather ``table[ids]``. ``ids`` int [N], ``values`` [N, D]."""
    if num_rows <= ONE_HOT_SCATTER_MAX_ROWS:
        one_hot = np.zeros((num_rows, ids.shape[0]), dtype=values.dtype)
        one_hot[ids, np.arange(ids.shape[0])] = 1.0
        return one_hot @ values
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    unique, first = np.unique(ids, return_index=True)
    out[unique] = values[first]
    if unique.shape[0] < ids.shape[0]:
        repeats = np.ones(ids.shape[0], dtype=bool)
        repeats[first] = False
        np.add.at(out, ids[repeats], values[repeats])
    return out


class NumpyModel:
    """LSTM encoder-decoder implementing :class:`seq2seq_kit.backend.Model`.

    Args:
        spec: the architecture.
        seed: seeds :func:`seq2seq_kit.weights.initial_weights`.
        optimizer: Adam settings for :meth:`train_step` (default ``OptimizerSpec()``).
        dtype: compute dtype, ``np.float32`` (default) or ``np.float64`` (for gradient
            checks). Weights cross the API as float32 either way.

    The decoder state handed out by :meth:`encode` and :meth:`step` is a tuple with one
    ``(h, c)`` pair of [B, H] arrays per layer, bottom layer first.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int = 0,
        optimizer: OptimizerSpec | None = None,
        dtype=np.float32,
    ):
        self.spec = spec
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
        self.optimizer = Adam(self.optimizer_spec, self._shapes, self.dtype)
        self.set_weights(initial_weights(spec, seed))

    # ------------------------------------------------------------------ Model protocol

    def train_step(self, batch: Batch) -> float:
        """One Adam step on ``batch``; returns the loss (nats per target token) before it."""
        loss = self._loss_and_gradients(batch)
        self.optimizer.update(self._flat, self._grad_flat)
        return loss

    def loss(self, batch: Batch) -> float:
        """Mean cross-entropy in nats over the positions where ``batch.tgt_mask`` is 1."""
        return self._loss_and_gradients(batch, backward=False)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """d :meth:`loss` / d weight for every canonical name, canonical shapes. The arrays
        have the model's dtype: float32, or float64 for a ``dtype=np.float64`` model (so
        that finite-difference checks are meaningful). Nothing is updated."""
        self._loss_and_gradients(batch)
        return {name: g.copy() for name, g in self._g.items()}

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        self._check_batch(batch)
        _, state = self._encode(batch.src_ids, batch.src_lengths)
        ids = np.ascontiguousarray(batch.tgt_in.T)
        caches, _ = self._stack_forward("decoder", ids, state)
        logp = self._output_log_probs(caches[-1].hiddens[1:])
        steps, batch_size = ids.shape
        logp = logp.reshape(steps, batch_size, -1).transpose(1, 0, 2)
        return np.ascontiguousarray(logp, dtype=np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> State:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> decoder initial state:
        per layer ``(h, c)``, [B, H] each, the state after ``src_lengths[b]`` tokens (zero
        for length 0)."""
        src_ids = np.asarray(src_ids)
        src_lengths = np.asarray(src_lengths)
        self._check_ids("src_ids", src_ids, self.spec.src_vocab_size, ndim=2)
        self._check_lengths(src_ids, src_lengths)
        return self._encode(src_ids, src_lengths)[1]

    def step(self, prev_ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        prev_ids = np.asarray(prev_ids)
        self._check_ids("prev_ids", prev_ids, self.spec.tgt_vocab_size, ndim=1)
        new_state = []
        x = None
        for layer, (h, c) in enumerate(state):
            if layer == 0:
                projected, _ = self._project_ids("decoder", prev_ids)
            else:
                w = self._w
                projected = x @ w[f"decoder.rnn.{layer}.kernel"]
                projected += w[f"decoder.rnn.{layer}.bias"]
            h, c = lstm.step(projected, h, c, self._w[f"decoder.rnn.{layer}.recurrent_kernel"])
            new_state.append((h, c))
            x = h
        return self._output_log_probs(x).astype(np.float32, copy=False), tuple(new_state)

    def reorder(self, state: State, index: np.ndarray) -> State:
        """Rows ``index`` (int64 [B']) of every array in ``state``, as a new state."""
        index = np.asarray(index)
        return tuple((h[index], c[index]) for h, c in state)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of all weights, canonical names and shapes."""
        return {name: w.astype(np.float32, copy=True) for name, w in self._w.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace all weights (cast to the model's dtype). Raises ``ValueError`` naming any
        missing, unexpected or mis-shaped weight, before changing anything."""
        check_weights(self.spec, {name: np.asarray(w) for name, w in weights.items()})
        for name, w in weights.items():
            self._w[name][...] = np.asarray(w, dtype=self.dtype)

    # ------------------------------------------------------------------ internals

    def _check_ids(self, what: str, ids: np.ndarray, vocab: int, ndim: int) -> None:
        if ids.ndim != ndim or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"{what} must be an integer array of rank {ndim}, got {ids.dtype} {ids.shape}"
            )
        # Negative ids would silently wrap around in a gather; seen as unsigned they are
        # huge, so one max() catches both ends.
        unsigned = ids.view(f"u{ids.dtype.itemsize}") if ids.dtype.kind == "i" else ids
        if ids.size and unsigned.max() >= vocab:
            raise ValueError(f"{what} holds ids outside [0, {vocab})")

    def _check_lengths(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> None:
        if src_lengths.shape != src_ids.shape[:1]:
            raise ValueError(
                f"src_lengths has shape {src_lengths.shape}, expected ({src_ids.shape[0]},)"
            )
        if src_lengths.size and (src_lengths.min() < 0 or src_lengths.max() > src_ids.shape[1]):
            raise ValueError(f"src_lengths must lie in [0, {src_ids.shape[1]}]")

    def _check_batch(self, batch: Batch) -> None:
        self._check_ids("src_ids", batch.src_ids, self.spec.src_vocab_size, ndim=2)
        self._check_lengths(batch.src_ids, batch.src_lengths)
        self._check_ids("tgt_in", batch.tgt_in, self.spec.tgt_vocab_size, ndim=2)
        self._check_ids("tgt_out", batch.tgt_out, self.spec.tgt_vocab_size, ndim=2)

    def _project_ids(self, side: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Layer-0 input projection ``x @ kernel + bias`` of ids of any shape -> ``[..., 4H]``
        and the embedded inputs (None for one-hot, where the projection is a row gather)."""
        w = self._w
        kernel = w[f"{side}.rnn.0.kernel"]
        if self.spec.embedding_size:
            embedded = np.take(w[f"{side}.embedding"], ids, axis=0)
            flat = embedded.reshape(-1, self.spec.embedding_size) @ kernel
            projected = flat.reshape(*ids.shape, kernel.shape[1])
        else:
            embedded = None
            projected = np.take(kernel, ids, axis=0)
        projected += w[f"{side}.rnn.0.bias"]
        return projected, embedded

    def _stack_forward(
        self, side: str, ids: np.ndarray, state: State
    ) -> tuple[list[lstm.Cache], np.ndarray | None]:
        """Run the layers of ``side`` over time-major int [T, B] ``ids`` from ``state``.
        Returns the per-layer caches and the embedded layer-0 inputs (or None)."""
        w = self._w
        caches = []
        projected, embedded = self._project_ids(side, ids)
        for layer in range(self.spec.num_layers):
            prefix = f"{side}.rnn.{layer}."
            if layer > 0:
                below = caches[-1].hiddens[1:]
                projected = below.reshape(-1, below.shape[-1]) @ w[prefix + "kernel"]
                projected = projected.reshape(*below.shape[:2], -1)
                projected += w[prefix + "bias"]
            h0, c0 = state[layer]
            caches.append(lstm.forward(projected, w[prefix + "recurrent_kernel"], h0, c0))
        return caches, embedded

    def _zero_state(self, batch_size: int) -> State:
        shape = (batch_size, self.spec.hidden_size)
        return tuple(
            (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
            for _ in range(self.spec.num_layers)
        )

    def _encode(self, src_ids: np.ndarray, src_lengths: np.ndarray):
        """Returns ``(caches, embedded, ids, lengths), state``; the encoder runs only up to
        the longest source: later steps cannot reach any row's final state."""
        lengths = src_lengths.astype(np.intp)
        steps = int(lengths.max()) if lengths.size else 0
        batch_size = src_ids.shape[0]
        if steps == 0:
            return None, self._zero_state(batch_size)
        ids = np.ascontiguousarray(src_ids[:, :steps].T)
        caches, embedded = self._stack_forward("encoder", ids, self._zero_state(batch_size))
        # Carrying the state through unchanged past a row's length (h_t = m h_new +
        # (1 - m) h_prev) leaves it equal to the state after its last real token, which
        # hiddens[length] holds (hiddens[0] is the zero state, for length 0).
        rows = np.arange(batch_size)
        state = tuple((c.hiddens[lengths, rows], c.cells[lengths, rows]) for c in caches)
        return (caches, embedded, ids, lengths), state

    def _output_log_probs(self, hiddens: np.ndarray, with_probs: bool = False):
        """Top-layer hiddens [..., H] -> log-probabilities [N, V] (N = all leading dims);
        see :func:`log_softmax` for ``with_probs``."""
        flat = hiddens.reshape(-1, self.spec.hidden_size)
        logits = flat @ self._w["decoder.output.kernel"]
        logits += self._w["decoder.output.bias"]
        return log_softmax(logits, with_probs)

    def _loss_and_gradients(self, batch: Batch, backward: bool = True) -> float:
        """The masked mean cross-entropy; with ``backward``, also fills the gradient buffer."""
        self._check_batch(batch)
        mask = batch.tgt_mask
        used = np.flatnonzero(mask.any(axis=0))
        # The decoder is causal: positions after the last unmasked one change nothing.
        steps = int(used[-1]) + 1 if used.size else 0
        total = float(mask.sum(dtype=np.float64))
        if steps == 0 or total == 0.0:
            self._grad_flat.fill(0.0)
            return 0.0
        enc, state = self._encode(batch.src_ids, batch.src_lengths)
        ids = np.ascontiguousarray(batch.tgt_in[:, :steps].T)
        caches, embedded = self._stack_forward("decoder", ids, state)
        top = caches[-1].hiddens[1:]
        flat_top = top.reshape(-1, self.spec.hidden_size)
        # Divide in the model dtype: a float32 mask divided by a Python float stays float32.
        weights = mask[:, :steps].T.ravel().astype(self.dtype) / total
        targets = batch.tgt_out[:, :steps].T.ravel()
        # The output layer (usually the costliest part) only runs at unmasked positions;
        # the rest get exactly zero gradient.
        real = np.flatnonzero(weights)
        padded = real.shape[0] < weights.shape[0]
        if padded:
            flat_top, weights, targets = flat_top[real], weights[real], targets[real]
        logp, probs = self._output_log_probs(flat_top, with_probs=True)
        rows = np.arange(targets.shape[0])
        loss = -float(np.dot(logp[rows, targets], weights))
        if not backward:
            return loss

        g, w = self._g, self._w
        # d loss / d logits = (softmax - one_hot(target)) * mask / sum(mask).
        d_logits = probs
        d_logits[rows, targets] -= 1.0
        d_logits *= weights[:, None]
        np.matmul(flat_top.T, d_logits, out=g["decoder.output.kernel"])
        np.sum(d_logits, axis=0, out=g["decoder.output.bias"])
        d_real = d_logits @ w["decoder.output.kernel"].T
        if padded:
            d_top = np.zeros(top.shape, dtype=self.dtype)
            d_top.reshape(-1, self.spec.hidden_size)[real] = d_real
        else:
            d_top = d_real.reshape(top.shape)
        handover = self._stack_backward("decoder", ids, caches, embedded, d_top)

        if enc is None:  # every source empty: the encoder received no input
            for name in self._g:
                if name.startswith("encoder."):
                    self._g[name].fill(0.0)
            return loss
        enc_caches, enc_embedded, enc_ids, lengths = enc
        enc_steps, batch_size = enc_ids.shape
        # The decoder's initial-state gradient enters the encoder at each row's last real
        # step; rows of length 0 handed over the constant zero state and get nothing.
        real = np.flatnonzero(lengths > 0)
        last = lengths[real] - 1
        dh_inject, dc_inject = [], []
        for dh0, dc0 in handover:
            dh = np.zeros((enc_steps, batch_size, self.spec.hidden_size), self.dtype)
            dc = np.zeros_like(dh)
            dh[last, real] = dh0[real]
            dc[last, real] = dc0[real]
            dh_inject.append(dh)
            dc_inject.append(dc)
        self._stack_backward(
            "encoder", enc_ids, enc_caches, enc_embedded, dh_inject[-1], dh_inject, dc_inject
        )
        return loss

    def _stack_backward(
        self,
        side: str,
        ids: np.ndarray,
        caches: list[lstm.Cache],
        embedded: np.ndarray | None,
        d_top: np.ndarray,
        dh_inject: list[np.ndarray] | None = None,
        dc_inject: list[np.ndarray] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """BPTT through the layers of ``side``, top first, writing the weight gradients.

        ``d_top`` is [T, B, H] d loss / d (top layer outputs); ``dh_inject``/``dc_inject``
        (encoder only) add per-layer gradients of the states handed to the decoder.
        Returns ``(dh0, dc0)`` per layer, bottom first."""
        g, w = self._g, self._w
        hidden = self.spec.hidden_size
        steps, batch_size = ids.shape
        d_out = d_top
        handover = []
        for layer in range(self.spec.num_layers - 1, -1, -1):
            prefix = f"{side}.rnn.{layer}."
            cache = caches[layer]
            if dh_inject is not None and layer < self.spec.num_layers - 1:
                d_out += dh_inject[layer]
            d_pre, dh0, dc0 = lstm.backward(
                cache, d_out, None if dc_inject is None else dc_inject[layer]
            )
            handover.append((dh0, dc0))
            flat_d = d_pre.reshape(-1, 4 * hidden)
            np.matmul(
                cache.hiddens[:-1].reshape(-1, hidden).T, flat_d, out=g[prefix + "recurrent_kernel"]
            )
            np.sum(flat_d, axis=0, out=g[prefix + "bias"])
            kernel = w[prefix + "kernel"]
            if layer > 0:
                below = caches[layer - 1].hiddens[1:].reshape(-1, hidden)
                np.matmul(below.T, flat_d, out=g[prefix + "kernel"])
                d_out = (flat_d @ kernel.T).reshape(steps, batch_size, hidden)
            elif embedded is None:
                g[prefix + "kernel"][...] = scatter_add_rows(ids.ravel(), flat_d, kernel.shape[0])
            else:
                flat_e = embedded.reshape(-1, self.spec.embedding_size)
                np.matmul(flat_e.T, flat_d, out=g[prefix + "kernel"])
                d_embedded = flat_d @ kernel.T
                table = g[f"{side}.embedding"]
                table[...] = scatter_add_rows(ids.ravel(), d_embedded, table.shape[0])
        handover.reverse()
        return handover
