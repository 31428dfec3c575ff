"""Global attention (Luong et al. 2015) as a Keras layer, after the top decoder layer.

The formulas are those of :mod:`seq2seq_kit.weights`. For queries ``h_t`` (the top decoder
layer's outputs, [B, T, H]) and memory ``m_s`` (the top encoder layer's outputs, [B, S, H])::

    "dot":      score(t, s) = h_t . m_s
    "general":  score(t, s) = (h_t @ kernel) . m_s
    "bahdanau": score(t, s) = v . tanh(h_t @ query_kernel + m_s @ memory_kernel)
    a_t = softmax over s < length of score(t, s)      (0 at s >= length)
    c_t = sum_s a_t,s m_s                              (0 for an empty source)
    h~_t = tanh([c_t, h_t] @ output_kernel)

Keras' own ``Attention`` / ``AdditiveAttention`` layers are not used: they mask by
subtracting 1e9, which gives a source of length 0 uniform weights over its padding (the
contract asks for zero weights and a zero context), and they have no ``general`` score or
output projection.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers, ops

KINDS = ("dot", "general", "bahdanau")

#: What a score drops to at a masked position before the softmax; exp() of it is exactly 0
#: next to any real score, and it stays finite so a fully masked row is not NaN.
_MASKED_SCORE = -1e9


def masked_score(dtype) -> float:
    """:data:`_MASKED_SCORE` in ``dtype``: -1e9 overflows float16 (mixed precision fp16)
    to -inf, and a fully masked row's softmax to NaN; -3e4 still underflows exp() there
    next to any real score."""
    return -3e4 if tf.as_dtype(dtype) == tf.float16 else _MASKED_SCORE


class Attention(layers.Layer):
    """Attention of a decoder over the encoder's memory, with the canonical variables
    ``kernel`` ("general"), ``query_kernel``, ``memory_kernel``, ``v`` ("bahdanau") and
    ``output_kernel`` (all kinds).

    The memory is a dict (part of the decoder state, built once per source batch by
    :meth:`memory`): ``values`` [B, S, H], ``mask`` bool [B, S] (True at real positions)
    and, for "bahdanau", ``keys`` [B, S, H] = ``values @ memory_kernel``.
    """

    def __init__(self, kind: str, units: int, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"attention must be one of {KINDS}, got {kind!r}")
        self.kind, self.units = kind, units

    def build(self, query_shape=None):
        square = (self.units, self.units)
        if self.kind == "general":
            self.kernel = self.add_weight(square, initializer="zeros", name="kernel")
        elif self.kind == "bahdanau":
            self.query_kernel = self.add_weight(square, initializer="zeros", name="query_kernel")
            self.memory_kernel = self.add_weight(square, initializer="zeros", name="memory_kernel")
            self.v = self.add_weight((self.units,), initializer="zeros", name="v")
        self.output_kernel = self.add_weight(
            (2 * self.units, self.units), initializer="zeros", name="output_kernel"
        )
        self.built = True

    def memory(self, values, mask) -> dict:
        """The memory dict of [B, S, H] ``values`` and bool [B, S] ``mask``."""
        memory = {"values": values, "mask": mask}
        if self.kind == "bahdanau":
            memory["keys"] = ops.matmul(values, self.memory_kernel)
        return memory

    def memory_signature(self) -> dict[str, tf.TensorSpec]:
        """The ``tf.TensorSpec`` of each entry of :meth:`memory` (batch and length open)."""
        values = tf.TensorSpec([None, None, self.units], tf.float32)
        signature = {"values": values, "mask": tf.TensorSpec([None, None], tf.bool)}
        if self.kind == "bahdanau":
            signature["keys"] = values
        return signature

    def call(self, query, memory):
        """[B, T, H] queries over ``memory`` -> (``h~`` [B, T, H], weights [B, T, S])."""
        values = memory["values"]
        if self.kind == "dot":
            scores = ops.einsum("bth,bsh->bts", query, values)
        elif self.kind == "general":
            scores = ops.einsum("bth,bsh->bts", ops.matmul(query, self.kernel), values)
        else:
            projected = ops.matmul(query, self.query_kernel)
            hidden = ops.tanh(projected[:, :, None, :] + memory["keys"][:, None, :, :])
            scores = ops.sum(hidden * self.v, axis=-1)
        mask = memory["mask"][:, None, :]
        weights = ops.softmax(ops.where(mask, scores, masked_score(scores.dtype)), axis=-1)
        # A row with no real position softmaxes to uniform weights; the mask zeroes them.
        weights = weights * ops.cast(mask, weights.dtype)
        context = ops.matmul(weights, values)
        output = ops.tanh(ops.matmul(ops.concatenate([context, query], -1), self.output_kernel))
        return output, weights
