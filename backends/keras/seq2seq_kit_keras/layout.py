"""Canonical weight names (:mod:`seq2seq_kit.weights`) <-> the Keras variables holding them,
for each architecture. Every canonical weight is one Keras variable as it is: no
transposition, no gate reordering, no copy.

RNN (:class:`.rnn.Seq2Seq`):

=========================================  =============================================
canonical name                             Keras variable
=========================================  =============================================
``{side}.embedding`` [V, E]                ``Embedding.embeddings``
``{side}.rnn.{l}.*``                       the LSTM / GRU cell's (:mod:`.lstm`, :mod:`.gru`)
``encoder.rnn_reverse.{l}.*``              ``Bidirectional.backward_layer``'s cell's
``decoder.attention.*``                    :class:`.attention.Attention`'s, same names
``decoder.output.kernel`` / ``.bias``      ``Dense.kernel`` / ``Dense.bias``
=========================================  =============================================

Transformer (:class:`.transformer.Transformer`):

=================================================  =====================================
canonical name                                     Keras variable
=================================================  =====================================
``{side}.embedding`` [V, D]                        ``Embedding.embeddings``
``{side}.positions`` [P, D]                        ``Embedding.embeddings`` (learned)
``*.{query,key,value,output}.kernel`` / ``.bias``  ``Dense.kernel`` / ``Dense.bias``
``*.feed_forward.{inner,outer}.kernel`` / ``.bias``  ``Dense.kernel`` / ``Dense.bias``
``*_norm.scale`` / ``.bias``                       ``LayerNormalization.gamma`` / ``.beta``
``decoder.output.kernel`` / ``.bias``              ``Dense`` (or :class:`.TiedOutput`'s bias)
=================================================  =====================================
"""

from __future__ import annotations

import keras
from keras import layers

from seq2seq_kit.weights import weight_shapes

from .rnn import Seq2Seq
from .transformer import MultiHeadAttention, Transformer

#: The canonical names of :class:`.attention.Attention`'s variables, by kind.
ATTENTION_NAMES = {
    "dot": ("output_kernel",),
    "general": ("kernel", "output_kernel"),
    "bahdanau": ("query_kernel", "memory_kernel", "v", "output_kernel"),
}


def variables_by_name(network: Seq2Seq | Transformer) -> dict[str, keras.Variable]:
    """Every weight of ``network`` under its canonical name, in the order of
    :func:`seq2seq_kit.weights.weight_shapes`.

    Raises:
        RuntimeError: the network's variables and the spec's layout name different weights
            or shapes (a bug in this backend, not in its input).
    """
    if isinstance(network, Transformer):
        found = _transformer_variables(network)
    else:
        found = _rnn_variables(network)
    expected = weight_shapes(network.spec)
    shapes = {name: tuple(variable.shape) for name, variable in found.items()}
    if shapes != {name: tuple(shape) for name, shape in expected.items()}:
        raise RuntimeError(
            f"the Keras network does not match the canonical layout: it has {sorted(shapes)} "
            f"where the layout has {sorted(expected)}, or shapes differ"
        )
    return {name: found[name] for name in expected}


# ---------------------------------------------------------------------------- RNN


def _rnn_side(side, name: str) -> dict[str, keras.Variable]:
    out = {}
    if side.embedding is not None:
        out[f"{name}.embedding"] = side.embedding.embeddings
    directions = {"rnn": side.rnns}
    if side.rnns and isinstance(side.rnns[0], layers.Bidirectional):
        directions = {
            "rnn": [rnn.forward_layer for rnn in side.rnns],
            "rnn_reverse": [rnn.backward_layer for rnn in side.rnns],
        }
    for direction, rnns in directions.items():
        for layer, rnn in enumerate(rnns):
            for weight, variable in side.cell_module.variables(rnn).items():
                out[f"{name}.{direction}.{layer}.{weight}"] = variable
    return out


def _rnn_variables(network: Seq2Seq) -> dict[str, keras.Variable]:
    out = {**_rnn_side(network.encoder, "encoder"), **_rnn_side(network.decoder, "decoder")}
    attention = network.decoder.attention
    if attention is not None:
        for weight in ATTENTION_NAMES[attention.kind]:
            out[f"decoder.attention.{weight}"] = getattr(attention, weight)
    output = network.decoder.output_layer
    out["decoder.output.kernel"] = output.kernel
    out["decoder.output.bias"] = output.bias
    return out


# ---------------------------------------------------------------------------- Transformer


def _dense(dense: layers.Dense, name: str) -> dict[str, keras.Variable]:
    return {f"{name}.kernel": dense.kernel, f"{name}.bias": dense.bias}


def _norm(norm: layers.LayerNormalization, name: str) -> dict[str, keras.Variable]:
    return {f"{name}.scale": norm.gamma, f"{name}.bias": norm.beta}


def _attention(attention: MultiHeadAttention, name: str) -> dict[str, keras.Variable]:
    return {
        **_dense(attention.query, f"{name}.query"),
        **_dense(attention.key, f"{name}.key"),
        **_dense(attention.value, f"{name}.value"),
        **_dense(attention.output_layer, f"{name}.output"),
    }


def _transformer_variables(network: Transformer) -> dict[str, keras.Variable]:
    spec = network.spec
    out = {}
    sides = (
        ("encoder", network.source_embedding, network.source_positions, network.encoder_layers),
        ("decoder", network.target_embedding, network.target_positions, network.decoder_layers),
    )
    for side, embedding, positions, stack in sides:
        if side == "encoder" or not spec.share_embeddings:
            out[f"{side}.embedding"] = embedding.embeddings
        if positions is not None:
            out[f"{side}.positions"] = positions.embeddings
        for index, block in enumerate(stack):
            prefix = f"{side}.layers.{index}"
            out.update(_attention(block.self_attention, f"{prefix}.self_attention"))
            out.update(_norm(block.self_attention_norm, f"{prefix}.self_attention_norm"))
            if block.cross_attention is not None:
                out.update(_attention(block.cross_attention, f"{prefix}.cross_attention"))
                out.update(_norm(block.cross_attention_norm, f"{prefix}.cross_attention_norm"))
            out.update(_dense(block.feed_forward.inner, f"{prefix}.feed_forward.inner"))
            out.update(_dense(block.feed_forward.outer, f"{prefix}.feed_forward.outer"))
            out.update(_norm(block.feed_forward_norm, f"{prefix}.feed_forward_norm"))
    if network.encoder_norm is not None:
        out.update(_norm(network.encoder_norm, "encoder.final_norm"))
        out.update(_norm(network.decoder_norm, "decoder.final_norm"))
    if spec.tie_output_embeddings:
        out["decoder.output.bias"] = network.output_layer.bias
    else:
        out.update(_dense(network.output_layer, "decoder.output"))
    return out
