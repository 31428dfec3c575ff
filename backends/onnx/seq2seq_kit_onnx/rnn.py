"""The RNN encoder-decoder of :mod:`seq2seq_kit.weights` as two ONNX graphs (opset 17),
built from the canonical weights: the encoder, and one decoder step. The maths is the
NumPy reference backend's (``seq2seq_kit_numpy.rnn``).

Encoder graph. Inputs ``src_ids`` int64 [B, S], ``src_lengths`` int64 [B]. Each encoder
layer is one ONNX ``LSTM`` or ``GRU`` node (``direction="bidirectional"`` for a
bidirectional encoder, ``sequence_lens`` the source lengths, so the reverse direction reads
each source from its own last token, and a length-0 source leaves the zero state). Outputs,
the decoder's initial state:

- ``h.{l}`` (and ``c.{l}`` for the LSTM) float32 [B, H]: layer ``l``'s state after the
  source (forward and reverse halves concatenated, forward first);
- with attention: ``memory`` float32 [B, S, H] (the top layer's outputs),
  ``source_mask`` bool [B, S] (true at real source positions), and for ``"bahdanau"``
  ``memory_keys`` float32 [B, S, H] (``memory @ memory_kernel``, computed once).

Decoder step graph. Inputs ``prev_ids`` int64 [B] and every encoder output above. Outputs
``log_probs`` float32 [B, V], ``next_h.{l}`` / ``next_c.{l}`` (the new state) and, with
attention, ``attention`` float32 [B, S]. ``memory``, ``memory_keys`` and ``source_mask``
are passed unchanged from step to step.

ONNX's ``LSTM`` orders gates ``i, o, f, c`` with kernels transposed ([G*h, In]) and two
biases; the canonical layout orders them ``i, f, g, o`` with one bias (the recurrent bias is
then zero). Its ``GRU`` orders ``z, r, h`` as the canonical layout does, and
``linear_before_reset=1`` is the canonical reset-after formula.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from seq2seq_kit.spec import ModelSpec

from .graph import Graph

#: Canonical LSTM gate blocks (i, f, g, o) in ONNX's order (i, o, f, c).
LSTM_ORDER = (0, 3, 1, 2)


def state_names(spec: ModelSpec) -> list[str]:
    """Names of the recurrent state tensors, bottom layer first."""
    kinds = ("h", "c") if spec.cell == "lstm" else ("h",)
    return [f"{kind}.{layer}" for layer in range(spec.num_layers) for kind in kinds]


def _onnx_gates(matrix: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """[In, G*h] canonical kernel -> ONNX's [G*h, In] in ONNX's gate order."""
    blocks = np.split(matrix, spec.gates, axis=-1)
    if spec.cell == "lstm":
        blocks = [blocks[k] for k in LSTM_ORDER]
    return np.concatenate(blocks, axis=-1).T


def _onnx_bias(bias: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Canonical bias -> ONNX's [2*G*h] (input bias, recurrent bias), ONNX's gate order."""
    if spec.cell == "lstm":
        blocks = np.split(bias, 4)
        return np.concatenate([blocks[k] for k in LSTM_ORDER] + [np.zeros_like(bias)])
    return bias.reshape(-1)


def encoder_graph(spec: ModelSpec, w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The encoder graph of ``spec`` over canonical weights ``w`` (see the module doc)."""
    g = Graph("encoder")
    ids = g.input("src_ids", TensorProto.INT64, ["batch", "source"])
    lengths = g.input("src_lengths", TensorProto.INT64, ["batch"])
    steps = g.op("Transpose", ids, perm=[1, 0])  # time-major [S, B]
    if spec.embedding_size:
        x = g.op("Gather", g.weight("encoder.embedding", w["encoder.embedding"]), steps)
    else:  # one-hot inputs: the rows of an identity matrix
        eye = np.eye(spec.src_vocab_size, dtype=np.float32)
        x = g.op("Gather", g.weight("encoder.one_hot", eye), steps)
    sequence_lens = g.op("Cast", lengths, to=TensorProto.INT32)
    directions = ("rnn", "rnn_reverse") if spec.bidirectional else ("rnn",)
    units = spec.hidden_size // len(directions)
    hidden_shape, output_shape = g.const([0, -1]), g.const([0, 0, -1])
    outputs = {}
    for layer in range(spec.num_layers):
        prefixes = [f"encoder.{d}.{layer}." for d in directions]
        kernel = np.stack([_onnx_gates(w[p + "kernel"], spec) for p in prefixes])
        recurrent = np.stack([_onnx_gates(w[p + "recurrent_kernel"], spec) for p in prefixes])
        bias = np.stack([_onnx_bias(w[p + "bias"], spec) for p in prefixes])
        attributes = {
            "hidden_size": units,
            "direction": "bidirectional" if spec.bidirectional else "forward",
        }
        if spec.cell == "gru":
            attributes["linear_before_reset"] = 1
        y, *final = g.op(
            spec.cell.upper(),
            x,
            g.weight(f"encoder.layer{layer}.W", kernel),
            g.weight(f"encoder.layer{layer}.R", recurrent),
            g.weight(f"encoder.layer{layer}.B", bias),
            sequence_lens,
            outputs=3 if spec.cell == "lstm" else 2,
            **attributes,
        )
        # [S, dirs, B, h] -> [S, B, dirs * h]; [dirs, B, h] -> [B, dirs * h]
        x = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), output_shape)
        for kind, value in zip(("h", "c"), final, strict=False):
            outputs[f"{kind}.{layer}"] = g.op(
                "Reshape", g.op("Transpose", value, perm=[1, 0, 2]), hidden_shape
            )
    for name in state_names(spec):
        g.output(outputs[name], name, TensorProto.FLOAT, ["batch", spec.hidden_size])
    if spec.attention != "none":
        memory = g.op("Transpose", x, perm=[1, 0, 2])
        g.output(memory, "memory", TensorProto.FLOAT, ["batch", "source", spec.hidden_size])
        if spec.attention == "bahdanau":
            keys = g.op(
                "MatMul",
                memory,
                g.weight("memory_kernel", w["decoder.attention.memory_kernel"]),
            )
            g.output(keys, "memory_keys", TensorProto.FLOAT, ["batch", "source", spec.hidden_size])
        width = g.op("Gather", g.op("Shape", ids), g.const(1))
        positions = g.op("Range", g.const(0), width, g.const(1))
        mask = g.op("Less", positions, g.op("Unsqueeze", lengths, g.const([1])))
        g.output(mask, "source_mask", TensorProto.BOOL, ["batch", "source"])
    return g.model("seq2seq-kit RNN encoder")


def _lstm_cell(g: Graph, projected: str, h: str, c: str, recurrent: str) -> tuple[str, str]:
    z = g.op("Add", projected, g.op("MatMul", h, recurrent))
    i, f, cand, o = g.op("Split", z, axis=-1, outputs=4)
    c_new = g.op(
        "Add",
        g.op("Mul", g.op("Sigmoid", f), c),
        g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", cand)),
    )
    h_new = g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c_new))
    return h_new, c_new


def _gru_cell(g: Graph, projected: str, h: str, recurrent: str, recurrent_bias: str) -> str:
    u = g.op("Add", g.op("MatMul", h, recurrent), recurrent_bias)
    xz, xr, xn = g.op("Split", projected, axis=-1, outputs=3)
    uz, ur, un = g.op("Split", u, axis=-1, outputs=3)
    z = g.op("Sigmoid", g.op("Add", xz, uz))
    r = g.op("Sigmoid", g.op("Add", xr, ur))
    n = g.op("Tanh", g.op("Add", xn, g.op("Mul", r, un)))
    # z * h + (1 - z) * n
    return g.op("Add", g.op("Mul", z, h), g.op("Mul", g.op("Sub", g.const(np.float32(1)), z), n))


def _attention(g: Graph, spec: ModelSpec, w: dict[str, np.ndarray], query: str) -> tuple:
    """Luong attention of [B, H] ``query`` over the memory -> (h~ [B, H], weights [B, S])."""
    hidden = spec.hidden_size
    memory = g.input("memory", TensorProto.FLOAT, ["batch", "source", hidden])
    if spec.attention == "bahdanau":
        keys = g.input("memory_keys", TensorProto.FLOAT, ["batch", "source", hidden])
    mask = g.input("source_mask", TensorProto.BOOL, ["batch", "source"])
    axis1 = g.const([1])
    if spec.attention == "bahdanau":
        projected = g.op(
            "MatMul", query, g.weight("query_kernel", w["decoder.attention.query_kernel"])
        )
        tanh = g.op("Tanh", g.op("Add", g.op("Unsqueeze", projected, axis1), keys))
        scores = g.op("MatMul", tanh, g.weight("v", w["decoder.attention.v"]))  # [B, S]
    else:
        if spec.attention == "general":
            query_at = g.op(
                "MatMul", query, g.weight("attention_kernel", w["decoder.attention.kernel"])
            )
        else:
            query_at = query
        scores = g.op(
            "MatMul", g.op("Unsqueeze", query_at, axis1), g.op("Transpose", memory, perm=[0, 2, 1])
        )
        scores = g.op("Squeeze", scores, axis1)
    probs = g.masked_softmax(scores, mask)
    context = g.op("Squeeze", g.op("MatMul", g.op("Unsqueeze", probs, axis1), memory), axis1)
    output_kernel = w["decoder.attention.output_kernel"]
    out = g.op(
        "Add",
        g.op("MatMul", context, g.weight("output_kernel.context", output_kernel[:hidden])),
        g.op("MatMul", query, g.weight("output_kernel.query", output_kernel[hidden:])),
    )
    return g.op("Tanh", out), probs


def step_graph(spec: ModelSpec, w: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The decoder step graph of ``spec`` over canonical weights ``w`` (module doc)."""
    g = Graph("decoder_step")
    prev = g.input("prev_ids", TensorProto.INT64, ["batch"])
    hidden = spec.hidden_size
    states = {
        name: g.input(name, TensorProto.FLOAT, ["batch", hidden]) for name in state_names(spec)
    }
    x = None
    for layer in range(spec.num_layers):
        prefix = f"decoder.rnn.{layer}."
        bias = w[prefix + "bias"]
        input_bias = bias if spec.cell == "lstm" else bias[0]
        kernel = g.weight(prefix + "kernel", w[prefix + "kernel"])
        if layer == 0 and not spec.embedding_size:
            projected = g.op("Gather", kernel, prev)  # one-hot input: a row of the kernel
        else:
            if layer == 0:
                x = g.op("Gather", g.weight("decoder.embedding", w["decoder.embedding"]), prev)
            projected = g.op("MatMul", x, kernel)
        projected = g.op("Add", projected, g.weight(prefix + "input_bias", input_bias))
        recurrent = g.weight(prefix + "recurrent_kernel", w[prefix + "recurrent_kernel"])
        if spec.cell == "lstm":
            x, c = _lstm_cell(g, projected, states[f"h.{layer}"], states[f"c.{layer}"], recurrent)
            g.output(c, f"next_c.{layer}", TensorProto.FLOAT, ["batch", hidden])
        else:
            recurrent_bias = g.weight(prefix + "recurrent_bias", bias[1])
            x = _gru_cell(g, projected, states[f"h.{layer}"], recurrent, recurrent_bias)
        g.output(x, f"next_h.{layer}", TensorProto.FLOAT, ["batch", hidden])
    probs = None
    if spec.attention != "none":
        x, probs = _attention(g, spec, w, x)
    logits = g.matmul(
        x,
        g.weight("decoder.output.kernel", w["decoder.output.kernel"]),
        g.weight("decoder.output.bias", w["decoder.output.bias"]),
    )
    g.output(g.log_softmax(logits), "log_probs", TensorProto.FLOAT, ["batch", spec.tgt_vocab_size])
    if probs is not None:
        g.output(probs, "attention", TensorProto.FLOAT, ["batch", "source"])
    return g.model("seq2seq-kit RNN decoder step")
