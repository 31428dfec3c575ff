"""The RNN encoder-decoder (``ModelSpec``) as pure JAX functions of ``(spec, params, arrays)``.

``params`` is a dict of canonical weight names (:mod:`seq2seq_kit.weights`) to arrays, so
the weights a user sees are the pytree JAX differentiates. Inside, sequences are time-major
(``[T, B, ...]``) so that :func:`jax.lax.scan` runs over the leading axis; attention and the
output layer are batch-major.

Shapes reaching these functions are padded (see :mod:`.model`): the batch with rows of
source length 0 and target mask 0, the time axes with trailing positions. Padding changes
no real result: encoder states are carried unchanged past each row's length, attention
masks positions at or past it, the decoder is causal and the loss weights by the mask.
Dropout masks are drawn per (site, position, row) (:mod:`.dropout`), so they too ignore
padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from seq2seq_kit.spec import ModelSpec

from . import attention, gru, lstm
from .attention import Memory
from .dropout import Dropout
from .loss import Arrays

#: The recurrent cell modules, by ``ModelSpec.cell``; they share one interface.
CELLS = {"lstm": lstm, "gru": gru}

Params = dict[str, jax.Array]
LayerState = tuple[jax.Array, ...]

#: Dropout sites: the input of encoder layer ``l`` is ``l``, of decoder layer ``l``
#: ``DECODER_SITE + l``; the top decoder output (before attention) is ``TOP_SITE``.
DECODER_SITE = 1000
TOP_SITE = 2000


def run_layer(
    cell,
    projected: jax.Array,
    initial: LayerState,
    recurrent_kernel: jax.Array,
    recurrent_bias: jax.Array | None,
    valid: jax.Array | None,
) -> tuple[jax.Array, LayerState]:
    """Scan ``cell`` over [T, B, G*h] input projections from ``initial``. Where bool [T, B]
    ``valid`` is False the state is carried unchanged (so the final state of row ``b`` is
    the one after its last valid step). Returns ``(hiddens [T, B, h], final state)``."""

    def body(state, inputs):
        if valid is None:
            new = cell.step(inputs, state, recurrent_kernel, recurrent_bias)
        else:
            x_t, valid_t = inputs
            new = cell.step(x_t, state, recurrent_kernel, recurrent_bias)
            new = tuple(jnp.where(valid_t[:, None], n, s) for n, s in zip(new, state, strict=True))
        return new, new[0]

    final, hiddens = lax.scan(body, initial, projected if valid is None else (projected, valid))
    return hiddens, final


def stack_forward(
    spec: ModelSpec,
    params: Params,
    side: str,
    ids: jax.Array,
    lengths: jax.Array | None,
    initial: tuple[LayerState, ...] | None,
    drop: Dropout | None,
) -> tuple[jax.Array, tuple[LayerState, ...]]:
    """Run the layers of ``side`` over time-major int [T, B] ``ids``, from ``initial`` (per
    layer; None: zeros). ``lengths`` (encoder only) freeze each row's state past its length
    and order the reverse direction of a bidirectional encoder, which reads positions
    ``length - 1 .. 0``. Returns the top layer's outputs [T, B, H] (directions concatenated,
    forward first) and the final state of every layer, bottom first."""
    cell = CELLS[spec.cell]
    steps, batch = ids.shape
    bidirectional = side == "encoder" and spec.bidirectional
    directions = ("rnn", "rnn_reverse") if bidirectional else ("rnn",)
    units = spec.hidden_size // len(directions)
    site0 = 0 if side == "encoder" else DECODER_SITE
    valid = None if lengths is None else jnp.arange(steps)[:, None] < lengths[None, :]

    def reverse(x):  # each row's first `length` steps in reverse order, 0 past it
        index = jnp.maximum(lengths[None, :] - 1 - jnp.arange(steps)[:, None], 0)
        out = x[index, jnp.arange(batch)[None, :]]
        return jnp.where(valid.reshape(valid.shape + (1,) * (x.ndim - 2)), out, 0)

    x = None
    if spec.embedding_size:
        x = params[f"{side}.embedding"][ids]
        if drop is not None:
            x = drop(site0, x)
    finals = []
    outputs = None
    for layer in range(spec.num_layers):
        if layer > 0:
            x = outputs if drop is None else drop(site0 + layer, outputs)
        layer_outputs, layer_finals = [], []
        for direction in directions:
            prefix = f"{side}.{direction}.{layer}."
            kernel = params[prefix + "kernel"]
            input_bias, recurrent_bias = cell.split_bias(params[prefix + "bias"])
            x_dir, ids_dir = x, ids
            if direction == "rnn_reverse":
                x_dir = None if x is None else reverse(x)
                ids_dir = reverse(ids)
            # one-hot inputs: the one-hot vector of id k times the kernel is its row k
            projected = (kernel[ids_dir] if x_dir is None else x_dir @ kernel) + input_bias
            zero = jnp.zeros((batch, units), jnp.float32)
            start = (zero,) * cell.NUM_STATES if initial is None else initial[layer]
            hiddens, final = run_layer(
                cell, projected, start, params[prefix + "recurrent_kernel"], recurrent_bias, valid
            )
            layer_outputs.append(hiddens if direction == "rnn" else reverse(hiddens))
            layer_finals.append(final)
        if bidirectional:
            outputs = jnp.concatenate(layer_outputs, axis=-1)
            finals.append(
                tuple(jnp.concatenate(p, axis=-1) for p in zip(*layer_finals, strict=True))
            )
        else:
            outputs = layer_outputs[0]
            finals.append(layer_finals[0])
    return outputs, tuple(finals)


def encode(
    spec: ModelSpec,
    params: Params,
    src_ids: jax.Array,
    src_lengths: jax.Array,
    drop: Dropout | None = None,
) -> tuple[tuple[LayerState, ...], Memory | None]:
    """Encoder over int [B, S] ids -> ``(decoder initial state per layer, attention memory
    or None)``; a row of length 0 hands over the zero state."""
    outputs, finals = stack_forward(spec, params, "encoder", src_ids.T, src_lengths, None, drop)
    mem = None
    if spec.attention != "none":
        mem = attention.memory(spec.attention, jnp.swapaxes(outputs, 0, 1), src_lengths, params)
    return finals, mem


def decode(
    spec: ModelSpec,
    params: Params,
    tgt_in: jax.Array,
    layers: tuple[LayerState, ...],
    mem: Memory | None,
    drop: Dropout | None = None,
) -> tuple[jax.Array, tuple[LayerState, ...], jax.Array | None]:
    """Teacher-forced decoder over int [B, T] inputs from ``layers``: returns float32
    log-probabilities [B, T, V], the final state per layer and the attention weights
    [B, T, S] (None without attention)."""
    outputs, finals = stack_forward(spec, params, "decoder", tgt_in.T, None, layers, drop)
    if drop is not None:
        outputs = drop(TOP_SITE, outputs)
    features = jnp.swapaxes(outputs, 0, 1)
    probs = None
    if mem is not None:
        features, probs = attention.attend(spec.attention, features, mem, params)
    logits = features @ params["decoder.output.kernel"] + params["decoder.output.bias"]
    return jax.nn.log_softmax(logits, axis=-1), finals, probs


def forward(spec: ModelSpec, params: Params, batch: Arrays, drop: Dropout | None = None):
    """Teacher-forced log-probabilities [B, T, V] of a batch, with ``drop`` applied to
    time-major activations [T, B, D] (sites above) during training."""
    layers, mem = encode(spec, params, batch.src_ids, batch.src_lengths, drop)
    return decode(spec, params, batch.tgt_in, layers, mem, drop)[0]
