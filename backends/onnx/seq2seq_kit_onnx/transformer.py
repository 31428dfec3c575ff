"""The Transformer encoder-decoder of :mod:`seq2seq_kit.weights` as two ONNX graphs (opset
17, for ``LayerNormalization``), built from the canonical weights. The maths is the NumPy
reference backend's (``seq2seq_kit_numpy.transformer``): embeddings scaled by
``sqrt(d_model)`` plus sinusoidal or learned positions, pre- or post-norm sub-layers, ReLU
or exact (erf) GELU, shared or tied embeddings. ``N`` heads of width ``d``.

Encoder graph. Inputs ``src_ids`` int64 [B, S], ``src_lengths`` int64 [B]. Outputs, the
decoder's initial state:

- ``cross_key.{l}``, ``cross_value.{l}`` float32 [B, N, S, d]: decoder layer ``l``'s
  cross-attention keys and values of the encoder output;
- ``source_mask`` bool [B, S], true at real source positions;
- ``self_key.{l}``, ``self_value.{l}`` float32 [B, N, 0, d]: the empty self-attention caches;
- ``position`` int64 scalar 0.

Decoder step graph. Inputs ``prev_ids`` int64 [B], every encoder output above, and, as
the previous steps left them, ``position`` t and the caches ``self_key.{l}``,
``self_value.{l}`` [B, N, P, d] of which the step reads the first t positions (P = t when
the caller concatenates; a caller owning a longer buffer passes it whole, positions t and
on finite and ignored). Outputs ``log_probs`` float32 [B, V], ``attention`` float32 [B, S]
(the top layer's cross-attention averaged over heads), ``new_self_key.{l}``,
``new_self_value.{l}`` [B, N, 1, d] (this position's keys and values, for the caller to
append along axis 2) and ``next_position`` (t + 1). The graph never copies the caches: the
cost of a step grows with t only through the attention itself. The step at
``position = max_positions`` has no position row: callers stop before.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.weights import LAYER_NORM_EPSILON, sinusoidal_positions

from .graph import Graph


class _Builder:
    """The Transformer's blocks over one :class:`Graph` and the canonical weights."""

    def __init__(self, g: Graph, spec: TransformerSpec, w: dict[str, np.ndarray]):
        self.g, self.spec, self.w = g, spec, w
        self.heads, self.width = spec.num_heads, spec.head_size
        self.pre_norm = spec.layer_norm == "pre"

    def weight(self, name: str) -> str:
        return self.g.weight(name, self.w[name])

    def positions(self, side: str) -> str:
        spec = self.spec
        if spec.stored_positions:
            return self.weight(f"{side}.positions")
        table = sinusoidal_positions(spec.max_positions, spec.d_model)
        return self.g.weight(f"{side}.sinusoids", table)

    def embedding_table(self, side: str) -> str:
        if side == "decoder" and self.spec.share_embeddings:
            side = "encoder"
        return self.weight(f"{side}.embedding")

    def embed(self, side: str, ids: str) -> str:
        g = self.g
        return g.op(
            "Mul",
            g.op("Gather", self.embedding_table(side), ids),
            g.const(np.float32(math.sqrt(self.spec.d_model))),
        )

    def norm(self, x: str, prefix: str) -> str:
        return self.g.op(
            "LayerNormalization",
            x,
            self.weight(prefix + "scale"),
            self.weight(prefix + "bias"),
            axis=-1,
            epsilon=LAYER_NORM_EPSILON,
        )

    def heads_of(self, x: str) -> str:
        """[B, T, D] -> [B, N, T, d]."""
        g = self.g
        split = g.op("Reshape", x, g.const([0, 0, self.heads, self.width]))
        return g.op("Transpose", split, perm=[0, 2, 1, 3])

    def project(self, x: str, prefix: str, part: str) -> str:
        """``x @ part.kernel + part.bias`` split into heads: [B, T, D] -> [B, N, T, d]."""
        return self.heads_of(
            self.g.matmul(
                x, self.weight(f"{prefix}{part}.kernel"), self.weight(f"{prefix}{part}.bias")
            )
        )

    def attend(self, q: str, k: str, v: str, mask: str | None, prefix: str) -> tuple[str, str]:
        """``softmax(q k^T / sqrt(d) + mask) v`` then the output projection: [B, N, T, d]
        queries, [B, N, S, d] keys and values, bool ``mask`` broadcast to [B, N, T, S] ->
        ([B, T, D], weights [B, N, T, S])."""
        g = self.g
        q = g.op("Mul", q, g.const(np.float32(1.0 / math.sqrt(self.width))))
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        probs = g.op("Softmax", scores, axis=-1) if mask is None else g.masked_softmax(scores, mask)
        return self.merge(g.op("MatMul", probs, v), prefix), probs

    def attend_cached(
        self, q: str, past: tuple[str, str], new: tuple[str, str], mask: str, prefix: str
    ) -> str:
        """Self-attention of one position over cached keys and values and its own:
        queries, ``new`` keys and values [B, N, 1, d], ``past`` ones [B, N, P, d], bool
        ``mask`` [P + 1] (the past positions to read, then the new one) -> [B, 1, D]. The
        scores of the past and of the new position are computed apart and joined (a
        [B, N, 1, P + 1] concatenation, not one of the caches)."""
        g = self.g
        (past_k, past_v), (k, v) = past, new
        q = g.op("Mul", q, g.const(np.float32(1.0 / math.sqrt(self.width))))
        past_scores = g.op("MatMul", q, g.op("Transpose", past_k, perm=[0, 1, 3, 2]))
        new_score = g.op("ReduceSum", g.op("Mul", q, k), g.const([-1]), keepdims=1)
        scores = g.op("Concat", past_scores, new_score, axis=-1)
        probs = g.masked_softmax(scores, mask)
        split = g.op("Gather", g.op("Shape", past_k), g.const([2]))  # [P]
        axis = g.const([3])
        past_probs = g.op("Slice", probs, g.const([0]), split, axis)
        new_prob = g.op("Slice", probs, split, g.op("Add", split, g.const([1])), axis)
        context = g.op(
            "Add", g.op("MatMul", past_probs, past_v), g.op("Mul", new_prob, v)
        )  # [B, N, 1, d]
        return self.merge(context, prefix)

    def merge(self, context: str, prefix: str) -> str:
        """Heads [B, N, T, d] -> [B, T, D], then the output projection."""
        g = self.g
        context = g.op("Transpose", context, perm=[0, 2, 1, 3])
        merged = g.op("Reshape", context, g.const([0, 0, self.spec.d_model]))
        return g.matmul(
            merged, self.weight(prefix + "output.kernel"), self.weight(prefix + "output.bias")
        )

    def feed_forward(self, x: str, prefix: str) -> str:
        g = self.g
        h = g.matmul(x, self.weight(prefix + "inner.kernel"), self.weight(prefix + "inner.bias"))
        if self.spec.activation == "relu":
            h = g.op("Relu", h)
        elif self.spec.activation == "swish":  # h sigmoid(h): opset 17 has no Swish operator
            h = g.op("Mul", h, g.op("Sigmoid", h))
        else:  # exact GELU: 0.5 h (1 + erf(h / sqrt 2))
            cdf = g.op("Erf", g.op("Mul", h, g.const(np.float32(math.sqrt(0.5)))))
            cdf = g.op("Add", cdf, g.const(np.float32(1.0)))
            h = g.op("Mul", g.op("Mul", h, cdf), g.const(np.float32(0.5)))
        return g.matmul(h, self.weight(prefix + "outer.kernel"), self.weight(prefix + "outer.bias"))

    def sublayer(self, x: str, norm: str, fn) -> str:
        """``x + fn(norm(x))`` (pre-norm) or ``norm(x + fn(x))`` (post-norm)."""
        if self.pre_norm:
            return self.g.op("Add", x, fn(self.norm(x, norm)))
        return self.norm(self.g.op("Add", x, fn(x)), norm)

    def final(self, x: str, side: str) -> str:
        return self.norm(x, f"{side}.final_norm.") if self.pre_norm else x


def encoder_graph(spec: TransformerSpec, w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The encoder graph of ``spec`` over canonical weights ``w`` (see the module doc)."""
    g = Graph("encoder")
    b = _Builder(g, spec, w)
    ids = g.input("src_ids", TensorProto.INT64, ["batch", "source"])
    lengths = g.input("src_lengths", TensorProto.INT64, ["batch"])
    width = g.op("Gather", g.op("Shape", ids), g.const(1))
    steps = g.op("Range", g.const(0), width, g.const(1))
    mask = g.op("Less", steps, g.op("Unsqueeze", lengths, g.const([1])))  # [B, S]
    key_mask = g.op("Unsqueeze", mask, g.const([1, 2]))  # [B, 1, 1, S]
    x = g.op("Add", b.embed("encoder", ids), g.op("Gather", b.positions("encoder"), steps))
    for layer in range(spec.encoder_layers):
        prefix = f"encoder.layers.{layer}."
        attention = prefix + "self_attention."

        def self_attention(h, attention=attention):
            q, k, v = (b.project(h, attention, part) for part in ("query", "key", "value"))
            return b.attend(q, k, v, key_mask, attention)[0]

        x = b.sublayer(x, prefix + "self_attention_norm.", self_attention)
        x = b.sublayer(
            x,
            prefix + "feed_forward_norm.",
            lambda h, p=prefix: b.feed_forward(h, p + "feed_forward."),
        )
    memory = b.final(x, "encoder")
    cache_shape = ["batch", spec.num_heads, "source", spec.head_size]
    empty_shape = ["batch", spec.num_heads, 0, spec.head_size]
    zero, axis2 = g.const([0]), g.const([2])
    for layer in range(spec.decoder_layers):
        prefix = f"decoder.layers.{layer}.cross_attention."
        key, value = b.project(memory, prefix, "key"), b.project(memory, prefix, "value")
        g.output(key, f"cross_key.{layer}", TensorProto.FLOAT, cache_shape)
        g.output(value, f"cross_value.{layer}", TensorProto.FLOAT, cache_shape)
        for name, like in (("self_key", key), ("self_value", value)):
            empty = g.op("Slice", like, zero, zero, axis2)
            g.output(empty, f"{name}.{layer}", TensorProto.FLOAT, empty_shape)
    g.output(mask, "source_mask", TensorProto.BOOL, ["batch", "source"])
    g.output(g.const(0), "position", TensorProto.INT64, [])
    return g.model("seq2seq-kit Transformer encoder")


def step_graph(spec: TransformerSpec, w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The decoder step graph of ``spec`` over canonical weights ``w`` (module doc)."""
    g = Graph("decoder_step")
    b = _Builder(g, spec, w)
    prev = g.input("prev_ids", TensorProto.INT64, ["batch"])
    heads, width = spec.num_heads, spec.head_size
    past = ["batch", heads, "past", width]
    source = ["batch", heads, "source", width]
    caches = {}
    for layer in range(spec.decoder_layers):
        for name in ("self_key", "self_value"):
            caches[f"{name}.{layer}"] = g.input(f"{name}.{layer}", TensorProto.FLOAT, past)
        for name in ("cross_key", "cross_value"):
            caches[f"{name}.{layer}"] = g.input(f"{name}.{layer}", TensorProto.FLOAT, source)
    mask = g.input("source_mask", TensorProto.BOOL, ["batch", "source"])
    position = g.input("position", TensorProto.INT64, [])
    key_mask = g.op("Unsqueeze", mask, g.const([1, 2]))
    # positions the self-attention reads: the first `position` of the P cached, and index P
    # (this position's own key)
    cached = g.op("Gather", g.op("Shape", caches["self_key.0"]), g.const(2))
    steps = g.op("Range", g.const(0), g.op("Add", cached, g.const(1)), g.const(1))
    self_mask = g.op("Or", g.op("Less", steps, position), g.op("Equal", steps, cached))
    x = g.op("Add", b.embed("decoder", prev), g.op("Gather", b.positions("decoder"), position))
    x = g.op("Unsqueeze", x, g.const([1]))  # [B, 1, D]: one position
    top = None
    for layer in range(spec.decoder_layers):
        prefix = f"decoder.layers.{layer}."

        def self_attention(h, layer=layer, prefix=prefix + "self_attention."):
            q, k, v = (b.project(h, prefix, part) for part in ("query", "key", "value"))
            one = ["batch", heads, 1, width]
            g.output(k, f"new_self_key.{layer}", TensorProto.FLOAT, one)
            g.output(v, f"new_self_value.{layer}", TensorProto.FLOAT, one)
            past = (caches[f"self_key.{layer}"], caches[f"self_value.{layer}"])
            return b.attend_cached(q, past, (k, v), self_mask, prefix)

        def cross_attention(h, layer=layer, prefix=prefix + "cross_attention."):
            nonlocal top
            q = b.project(h, prefix, "query")
            out, top = b.attend(
                q, caches[f"cross_key.{layer}"], caches[f"cross_value.{layer}"], key_mask, prefix
            )
            return out

        x = b.sublayer(x, prefix + "self_attention_norm.", self_attention)
        x = b.sublayer(x, prefix + "cross_attention_norm.", cross_attention)
        x = b.sublayer(
            x,
            prefix + "feed_forward_norm.",
            lambda h, p=prefix: b.feed_forward(h, p + "feed_forward."),
        )
    y = g.op("Squeeze", b.final(x, "decoder"), g.const([1]))  # [B, D]
    if spec.tie_output_embeddings:
        side = "encoder" if spec.share_embeddings else "decoder"
        kernel = g.weight("decoder.output.tied_kernel", w[f"{side}.embedding"].T)
    else:
        kernel = b.weight("decoder.output.kernel")
    logits = g.matmul(y, kernel, b.weight("decoder.output.bias"))
    g.output(g.log_softmax(logits), "log_probs", TensorProto.FLOAT, ["batch", spec.tgt_vocab_size])
    # the top layer's cross-attention [B, N, 1, S] averaged over heads -> [B, S]
    attention = g.op("Squeeze", g.op("ReduceMean", top, axes=[1], keepdims=0), g.const([1]))
    g.output(attention, "attention", TensorProto.FLOAT, ["batch", "source"])
    g.output(g.op("Add", position, g.const(1)), "next_position", TensorProto.INT64, [])
    return g.model("seq2seq-kit Transformer decoder step")
