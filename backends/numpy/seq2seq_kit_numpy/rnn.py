"""The RNN encoder-decoder network (Sutskever et al. 2014) with LSTM or GRU cells, an
optional bidirectional encoder and optional global attention (Luong et al. 2015), in the
canonical weight layout of :mod:`seq2seq_kit.weights`: forward, backward, and the decoder
state of incremental decoding.

The network reads weights from, and writes gradients into, name -> array dicts it is
given (views into the model's flat buffers, see :mod:`.model`). Inside, sequences are
time-major (``[T, B, ...]``); the batch arrays are transposed once on the way in. The
recurrent cell is a module (:mod:`.lstm` or :mod:`.gru`, one interface) chosen by
``spec.cell``; the attention numerics live in :mod:`.attention` (batch-major).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.vocab import PAD

from . import attention, gru, lstm
from .ops import Dropout, cross_entropy, log_softmax, scatter_add_rows

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

LayerState = tuple[np.ndarray, ...]


class DecoderState(NamedTuple):
    """The decoder state handed out by :meth:`RNN.encode` and :meth:`RNN.step`.

    Attributes:
        layers: one state per decoder layer, bottom first: ``(h, c)`` for the LSTM, ``(h,)``
            for the GRU, [B, H] each.
        memory: the attention memory (:class:`attention.Memory`), None without attention.
        weights: [B, S'] attention weights of the step that produced this state, over the
            memory's S' positions; None from ``encode`` or without attention.
        source_width: S, the width of the ``src_ids`` encoded (``attention`` pads to it).
    """

    layers: tuple[LayerState, ...]
    memory: attention.Memory | None
    weights: np.ndarray | None
    source_width: int


class _Reversal(NamedTuple):
    """Index of the reverse direction's reading order: step ``t`` of row ``b`` reads
    position ``index[t, b] = length_b - 1 - t`` where ``valid[t, b]`` (``t < length_b``).
    Restricted to valid entries this is an involution, so the same gather maps reversed
    time back to positions."""

    index: np.ndarray
    rows: np.ndarray
    valid: np.ndarray


class _Stack(NamedTuple):
    """The forward pass of one side's layers, kept for the backward pass.

    Attributes:
        ids: [T, B] time-major ids.
        reversal: the reverse direction's order (bidirectional encoder), else None.
        reversed_ids: [T, B] the ids the reverse direction reads (PAD past the length).
        inputs: per layer, per direction, the layer input [T, B, In] after dropout (None
            for one-hot layer-0 inputs, where the projection is a row gather).
        masks: per layer, the dropout mask of its input (None: no dropout there).
        caches: per layer, per direction, the cell's cache.
        outputs: per layer, the outputs [T, B, H] (directions concatenated).
    """

    ids: np.ndarray
    reversal: _Reversal | None
    reversed_ids: np.ndarray | None
    inputs: list[tuple[np.ndarray | None, ...]]
    masks: list[np.ndarray | None]
    caches: list[tuple]
    outputs: list[np.ndarray]


def _reversal(lengths: np.ndarray, steps: int) -> _Reversal:
    index = lengths[None, :] - 1 - np.arange(steps)[:, None]
    valid = index >= 0
    np.maximum(index, 0, out=index)
    return _Reversal(index, np.arange(lengths.shape[0]), valid)


def _reverse(x: np.ndarray, order: _Reversal) -> np.ndarray:
    """Each row's first ``length`` steps of time-major ``x`` [T, B, ...] in reverse order,
    zero past the length (a fresh array). Its own inverse (and adjoint) on those steps."""
    out = x[order.index, order.rows]
    out[~order.valid] = 0
    return out


class RNN:
    """The RNN encoder-decoder of ``spec`` over the weights ``w`` (read) and gradients ``g``
    (written), name -> array dicts in the canonical layout, computing in ``dtype``."""

    def __init__(
        self,
        spec: ModelSpec,
        w: dict[str, np.ndarray],
        g: dict[str, np.ndarray],
        dtype: np.dtype,
    ):
        self.spec, self._w, self._g, self.dtype = spec, w, g, np.dtype(dtype)
        self.cell = CELLS[spec.cell]

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        _, state = self._encode(batch.src_ids, batch.src_lengths)
        ids = np.ascontiguousarray(batch.tgt_in.T)
        features = self._decoder_forward(ids, state)[-1]
        logp = self._output_log_probs(features)
        steps, batch_size = ids.shape
        logp = logp.reshape(steps, batch_size, -1).transpose(1, 0, 2)
        return np.ascontiguousarray(logp, dtype=np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the decoder's initial
        :class:`DecoderState`: per layer the encoder's state after ``src_lengths[b]`` tokens
        (zero for length 0; forward and reverse halves concatenated when bidirectional),
        and the attention memory."""
        return self._encode(src_ids, src_lengths)[1]

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified."""
        w, cell = self._w, self.cell
        new_layers = []
        x = None
        for layer, layer_state in enumerate(state.layers):
            prefix = f"decoder.rnn.{layer}."
            input_bias, recurrent_bias = cell.split_bias(w[prefix + "bias"])
            if layer == 0:
                x = self._embed("decoder", prev_ids)
                projected = self._project(prefix, x, prev_ids)
            else:
                projected = x @ w[prefix + "kernel"]
                projected += input_bias
            layer_state = cell.step(
                projected, layer_state, w[prefix + "recurrent_kernel"], recurrent_bias
            )
            new_layers.append(layer_state)
            x = layer_state[0]
        weights = None
        if state.memory is not None:
            x, weights = attention.step(self.spec.attention, x, state.memory, w)
        log_probs = self._output_log_probs(x).astype(np.float32, copy=False)
        return log_probs, state._replace(layers=tuple(new_layers), weights=weights)

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of every array in ``state``, as a new state."""
        return DecoderState(
            tuple(tuple(a[index] for a in layer) for layer in state.layers),
            None if state.memory is None else state.memory.take(index),
            None if state.weights is None else state.weights[index],
            state.source_width,
        )

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S] attention weights of the step that returned ``state`` (S the
        width of the encoded ``src_ids``; 0 past each source's length, rows summing to 1,
        or all 0 for an empty source); None for an ``encode`` state or without attention."""
        if state.weights is None:
            return None
        return attention_at_width(state.weights, state.source_width)

    # ------------------------------------------------------------------ forward

    def _embed(self, side: str, ids: np.ndarray) -> np.ndarray | None:
        """Embedded ids ``[..., E]`` (a fresh array), or None with one-hot inputs."""
        if not self.spec.embedding_size:
            return None
        return np.take(self._w[f"{side}.embedding"], ids, axis=0)

    def _project(self, prefix: str, x: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
        """Input projection ``x @ kernel + input bias`` of a layer -> ``[..., G*h]`` (a fresh
        array); with ``x`` None (one-hot inputs), a row gather of the kernel by ``ids``."""
        w = self._w
        kernel = w[prefix + "kernel"]
        if x is None:
            projected = np.take(kernel, ids, axis=0)
        else:
            flat = x.reshape(-1, x.shape[-1]) @ kernel
            projected = flat.reshape(*x.shape[:-1], kernel.shape[1])
        projected += self.cell.split_bias(w[prefix + "bias"])[0]
        return projected

    def _zero_state(self, batch_size: int, units: int) -> LayerState:
        shape = (batch_size, units)
        return tuple(np.zeros(shape, self.dtype) for _ in range(self.cell.NUM_STATES))

    def _stack_forward(
        self,
        side: str,
        ids: np.ndarray,
        initial: tuple[LayerState, ...] | None,
        drop: Dropout | None,
        lengths: np.ndarray | None = None,
    ) -> _Stack:
        """Run the layers of ``side`` over time-major int [T, B] ``ids``, from ``initial``
        (per layer; None: zero). ``lengths`` (encoder) are needed by the reverse direction
        of a bidirectional encoder."""
        spec, w, cell = self.spec, self._w, self.cell
        steps, batch_size = ids.shape
        bidirectional = side == "encoder" and spec.bidirectional
        directions = ("rnn", "rnn_reverse") if bidirectional else ("rnn",)
        units = spec.hidden_size // len(directions)
        reversal = reversed_ids = None
        if bidirectional:
            reversal = _reversal(lengths, steps)
            reversed_ids = ids[reversal.index, reversal.rows]
            reversed_ids[~reversal.valid] = PAD
        inputs, masks, caches, outputs = [], [], [], []
        x = self._embed(side, ids)
        mask = None
        if x is not None and drop is not None:
            mask = drop(x.shape)
            x *= mask
        for layer in range(spec.num_layers):
            if layer > 0:
                x = outputs[-1]
                mask = None
                if drop is not None:
                    mask = drop(x.shape)
                    x = x * mask
            layer_inputs, layer_caches = [], []
            for direction in directions:
                prefix = f"{side}.{direction}.{layer}."
                if direction == "rnn":
                    x_dir, ids_dir = x, ids
                else:
                    x_dir = None if x is None else _reverse(x, reversal)
                    ids_dir = reversed_ids
                projected = self._project(prefix, x_dir, ids_dir)
                state = self._zero_state(batch_size, units) if initial is None else initial[layer]
                _, recurrent_bias = cell.split_bias(w[prefix + "bias"])
                layer_caches.append(
                    cell.forward(projected, w[prefix + "recurrent_kernel"], recurrent_bias, state)
                )
                layer_inputs.append(x_dir)
            if bidirectional:
                forward_out = layer_caches[0].hiddens[1:]
                reverse_out = _reverse(layer_caches[1].hiddens[1:], reversal)
                outputs.append(np.concatenate([forward_out, reverse_out], axis=-1))
            else:
                outputs.append(layer_caches[0].hiddens[1:])
            inputs.append(tuple(layer_inputs))
            masks.append(mask)
            caches.append(tuple(layer_caches))
        return _Stack(ids, reversal, reversed_ids, inputs, masks, caches, outputs)

    def _encode(self, src_ids: np.ndarray, src_lengths: np.ndarray, drop=None):
        """Returns ``(stack, lengths) or None, state``; the encoder runs only up to the
        longest source: later steps cannot reach any row's final state or real memory
        position (None when every source is empty)."""
        spec = self.spec
        lengths = src_lengths.astype(np.intp)
        steps = int(lengths.max()) if lengths.size else 0
        batch_size = src_ids.shape[0]
        if steps == 0:
            layers = tuple(
                self._zero_state(batch_size, spec.hidden_size) for _ in range(spec.num_layers)
            )
            memory = None
            if spec.attention != "none":
                # One all-masked position keeps the attention shapes non-empty: c_t = 0.
                values = np.zeros((batch_size, 1, spec.hidden_size), self.dtype)
                memory = attention.memory(spec.attention, values, lengths, self._w)
            return None, DecoderState(layers, memory, None, src_ids.shape[1])
        ids = np.ascontiguousarray(src_ids[:, :steps].T)
        stack = self._stack_forward("encoder", ids, None, drop, lengths)
        # Carrying the state through unchanged past a row's length (h_t = m h_new +
        # (1 - m) h_prev) leaves it equal to the state after its last real token, which
        # the state histories hold at index length (index 0 is the zero state, for length
        # 0). The reverse direction's final state is also the one after `length` steps.
        rows = np.arange(batch_size)
        layers = []
        for layer_caches in stack.caches:
            finals = [tuple(s[lengths, rows] for s in c.states) for c in layer_caches]
            if len(finals) == 1:
                layers.append(finals[0])
            else:
                layers.append(tuple(np.concatenate(p, axis=-1) for p in zip(*finals, strict=True)))
        memory = None
        if spec.attention != "none":
            values = np.ascontiguousarray(stack.outputs[-1].transpose(1, 0, 2))
            memory = attention.memory(spec.attention, values, lengths, self._w)
        return (stack, lengths), DecoderState(tuple(layers), memory, None, src_ids.shape[1])

    def _decoder_forward(self, ids: np.ndarray, state: DecoderState, drop=None):
        """Teacher-forced decoder over time-major [T, B] ``ids`` from ``state``. Returns
        ``(stack, top_mask, attention_cache, features)``: ``features`` [T, B, H] are what the
        output layer reads (the top outputs, after dropout and attention)."""
        stack = self._stack_forward("decoder", ids, state.layers, drop)
        features = stack.outputs[-1]
        top_mask = None
        if drop is not None:
            top_mask = drop(features.shape)
            features = features * top_mask
        att_cache = None
        if state.memory is not None:
            query = np.ascontiguousarray(features.transpose(1, 0, 2))
            out, att_cache = attention.forward(self.spec.attention, query, state.memory, self._w)
            features = np.ascontiguousarray(out.transpose(1, 0, 2))
        return stack, top_mask, att_cache, features

    def _output_log_probs(self, features: np.ndarray, with_probs: bool = False):
        """Output features [..., H] -> log-probabilities [N, V] (N = all leading dims);
        see :func:`log_softmax` for ``with_probs``."""
        flat = features.reshape(-1, self.spec.hidden_size)
        logits = flat @ self._w["decoder.output.kernel"]
        logits += self._w["decoder.output.bias"]
        return log_softmax(logits, with_probs)

    # ------------------------------------------------------------------ loss and backward

    def loss_and_gradients(
        self,
        batch: Batch,
        *,
        backward: bool = True,
        drop: Dropout | None = None,
        smoothing: float = 0.0,
        normalizer: float | None = None,
    ) -> float:
        """The masked, label-smoothed (``smoothing``) cross-entropy summed over the target
        tokens of ``batch`` and divided by ``normalizer`` (default: their count); with
        ``backward``, also writes every gradient into ``g``. ``drop`` draws dropout masks
        (training only)."""
        spec = self.spec
        hidden = spec.hidden_size
        mask = batch.tgt_mask
        used = np.flatnonzero(mask.any(axis=0))
        # The decoder is causal: positions after the last unmasked one change nothing.
        steps = int(used[-1]) + 1 if used.size else 0
        total = float(mask.sum(dtype=np.float64)) if normalizer is None else normalizer
        if steps == 0 or total == 0.0:
            for grad in self._g.values():
                grad.fill(0.0)
            return 0.0
        enc, state = self._encode(batch.src_ids, batch.src_lengths, drop)
        ids = np.ascontiguousarray(batch.tgt_in[:, :steps].T)
        stack, top_mask, att_cache, features = self._decoder_forward(ids, state, drop)
        flat_features = features.reshape(-1, hidden)
        # Divide in the model dtype: a float32 mask divided by a Python float stays float32.
        weights = mask[:, :steps].T.ravel().astype(self.dtype) / total
        targets = batch.tgt_out[:, :steps].T.ravel()
        # The output layer (usually the costliest part) only runs at unmasked positions;
        # the rest get exactly zero gradient.
        real = np.flatnonzero(weights)
        padded = real.shape[0] < weights.shape[0]
        if padded:
            flat_features, weights, targets = flat_features[real], weights[real], targets[real]
        logits = flat_features @ self._w["decoder.output.kernel"]
        logits += self._w["decoder.output.bias"]
        loss, d_logits = cross_entropy(logits, targets, weights, smoothing, backward)
        if not backward:
            return loss

        g, w = self._g, self._w
        np.matmul(flat_features.T, d_logits, out=g["decoder.output.kernel"])
        np.sum(d_logits, axis=0, out=g["decoder.output.bias"])
        d_real = d_logits @ w["decoder.output.kernel"].T
        if padded:
            d_features = np.zeros(features.shape, dtype=self.dtype)
            d_features.reshape(-1, hidden)[real] = d_real
        else:
            d_features = d_real.reshape(features.shape)
        d_memory = None
        if att_cache is not None:
            d_query, d_values = attention.backward(
                spec.attention,
                att_cache,
                d_features.transpose(1, 0, 2),
                w,
                g,
                state.memory,
            )
            d_features = np.ascontiguousarray(d_query.transpose(1, 0, 2))
            d_memory = np.ascontiguousarray(d_values.transpose(1, 0, 2))
        if top_mask is not None:
            d_features *= top_mask
        handover = self._stack_backward("decoder", stack, d_features)

        if enc is None:  # every source empty: the encoder received no input
            for name in self._g:
                if name.startswith("encoder."):
                    self._g[name].fill(0.0)
            return loss
        enc_stack, lengths = enc
        self._stack_backward("encoder", enc_stack, d_memory, handover, lengths)
        return loss

    def _stack_backward(
        self,
        side: str,
        stack: _Stack,
        d_top: np.ndarray | None,
        handover: list[LayerState] | None = None,
        lengths: np.ndarray | None = None,
    ) -> list[LayerState]:
        """BPTT through the layers of ``side``, top first, writing the weight gradients.

        ``d_top`` is [T, B, H] d loss / d (top layer outputs), or None for zero;
        ``handover`` (encoder only) is, per layer, the gradient of the final state handed
        to the decoder, [B, H] per state array, which enters each row's last real step.
        Returns the gradients of the (forward direction's) initial states, per layer, bottom
        first: the decoder's handover to the encoder."""
        spec, g, w, cell = self.spec, self._g, self._w, self.cell
        steps, batch_size = stack.ids.shape
        directions = len(stack.caches[0])
        units = spec.hidden_size // directions
        reversal = stack.reversal
        if handover is not None:
            real = np.flatnonzero(lengths > 0)
            last = lengths[real] - 1
        d_out, owned = d_top, False  # owned: d_out is a scratch array of this pass
        initial = []
        for layer in range(spec.num_layers - 1, -1, -1):
            d_in = None
            for direction in range(directions):
                prefix = f"{side}.{('rnn', 'rnn_reverse')[direction]}.{layer}."
                cache = stack.caches[layer][direction]
                columns = slice(direction * units, (direction + 1) * units)
                if d_out is None:
                    dh = np.zeros((steps, batch_size, units), dtype=self.dtype)
                elif directions == 1:
                    dh = d_out if owned or handover is None else d_out.copy()
                elif direction == 0:
                    dh = np.ascontiguousarray(d_out[..., columns])
                else:
                    dh = _reverse(d_out[..., columns], reversal)
                carry = None
                if handover is not None:
                    if directions == 1:
                        parts = [d[real] for d in handover[layer]]
                    else:
                        parts = [d[real, columns] for d in handover[layer]]
                    if d_out is None:
                        dh[last, real] = parts[0]
                    else:
                        dh[last, real] += parts[0]
                    carry = []
                    for part in parts[1:]:
                        dense = np.zeros((steps, batch_size, units), dtype=self.dtype)
                        dense[last, real] = part
                        carry.append(dense)
                d_x, d_u, d_initial = cell.backward(cache, dh, carry)
                if direction == 0:
                    initial.append(d_initial)
                flat_dx = d_x.reshape(-1, d_x.shape[-1])
                flat_du = flat_dx if d_u is d_x else d_u.reshape(flat_dx.shape)
                np.matmul(
                    cache.hiddens[:-1].reshape(-1, units).T,
                    flat_du,
                    out=g[prefix + "recurrent_kernel"],
                )
                cell.bias_gradient(g[prefix + "bias"], flat_dx, flat_du)
                kernel = w[prefix + "kernel"]
                x = stack.inputs[layer][direction]
                if x is None:  # one-hot inputs: the kernel was gathered by id
                    ids = stack.ids if direction == 0 else stack.reversed_ids
                    g[prefix + "kernel"][...] = scatter_add_rows(
                        ids.ravel(), flat_dx, kernel.shape[0]
                    )
                    continue
                np.matmul(x.reshape(-1, x.shape[-1]).T, flat_dx, out=g[prefix + "kernel"])
                d_x_in = (flat_dx @ kernel.T).reshape(*x.shape)
                if direction == 1:
                    d_x_in = _reverse(d_x_in, reversal)
                if d_in is None:
                    d_in = d_x_in
                else:
                    d_in += d_x_in
            if d_in is not None and stack.masks[layer] is not None:
                d_in *= stack.masks[layer]
            if layer > 0:
                d_out, owned = d_in, True
            elif d_in is not None:
                table = g[f"{side}.embedding"]
                table[...] = scatter_add_rows(
                    stack.ids.ravel(), d_in.reshape(-1, d_in.shape[-1]), table.shape[0]
                )
        initial.reverse()
        return initial
