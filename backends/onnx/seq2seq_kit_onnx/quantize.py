"""int8 graphs: the encoder and decoder-step graphs of :mod:`.rnn` and :mod:`.transformer`
with 8-bit weights, for ONNX Runtime's integer kernels. Three passes over a float32 graph:

1. Lookup tables (every float32 initializer a ``Gather`` reads rows of: the embeddings,
   the one-hot identity, a position table) become int8 with one float32 scale per row,
   ``max |row| / 127`` as CTranslate2 scales its weights; the ``Gather`` becomes
   ``Gather(int8) -> Cast -> Mul(Gather(scales))``, exact up to rounding. ONNX Runtime's
   own quantization of a ``Gather`` has one scale per table, which the rare large rows of
   an embedding decide: on the Tatoeba Transformer (teacher-forced, 64 sentences) the
   log-probabilities of the reference tokens moved by 0.0108 nats on average with it,
   0.0092 with a scale per row (0.0028 for the tables alone).
2. The weights of operators ONNX Runtime has no integer kernel of (the ``GRU`` encoder)
   are read as ``Cast(int8) * scale``, a scale per row: stored in 8 bits, computed in
   float32 (ONNX Runtime folds the two nodes into a float32 weight as it loads the graph).
3. ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``,
   https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html) of the
   ``MatMul`` nodes whose second input is a weight matrix (``MatMulInteger``: int8 weights
   with a scale per output column, the activations quantized to uint8 per call with their
   own range, int32 accumulation; the decoder's RNN cells are spelled out as such
   products) and of the ``LSTM`` encoder (``DynamicQuantizeLSTM``).

What stays float32: every bias, layer norm, attention score and softmax, the log-softmax,
the matrix products of two activations (attention), a product with a weight vector
(Bahdanau attention's ``v``), and the GRU encoder's arithmetic. Importing this module
imports ``onnx``; quantizing imports ``onnxruntime.quantization``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The schemes this backend runs and exports.
SCHEMES = ("int8",)
#: The operators dynamic quantization turns into integer ones (the others stay float32).
INTEGER_OPS = ("MatMul", "LSTM")
#: Operators with weights and no integer kernel in ONNX Runtime: their weights are stored
#: in 8 bits and computed in float32.
FLOAT_ONLY = ("GRU",)


def quantize(model: onnx.ModelProto, scheme: str) -> onnx.ModelProto:
    """``model`` (a float32 graph of this backend) with its weights in ``scheme`` (module
    docstring); ``model`` is not modified.

    Raises:
        ValueError: a scheme other than ``int8``.
    """
    if scheme not in SCHEMES:
        raise ValueError(
            f"backend 'onnx' quantizes to {', '.join(SCHEMES)} only, not {scheme!r} "
            f"(ONNX Runtime's dynamic quantization is 8-bit)"
        )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tables = int8_stored(int8_tables(model))
    weights = {t.name: len(t.dims) for t in tables.graph.initializer}
    # a product with a weight vector (Bahdanau's score vector v) stays float32: ONNX
    # Runtime's integer MatMul takes per-column scales of a matrix only
    vectors = [
        node.name
        for node in tables.graph.node
        if node.op_type == "MatMul" and weights.get(node.input[1], 2) != 2
    ]
    # quantize_dynamic logs advice (pre-processing, per-channel) at WARNING on every call
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="seq2seq-kit-onnx-") as folder:
            out = Path(folder) / "int8.onnx"
            quantize_dynamic(
                tables,
                out,
                op_types_to_quantize=list(INTEGER_OPS),
                nodes_to_exclude=vectors,
                per_channel=True,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
            return onnx.load(out)
    finally:
        quiet.setLevel(level)


def int8_tables(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose float32 lookup tables are int8 with a scale per row
    (module docstring, pass 1); a table that other nodes read too stays there in float32
    for them."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    made: dict[str, tuple[str, str]] = {}
    nodes = []
    for node in graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2 or axis:
            nodes.append(node)
            continue
        if table.name not in made:
            values, scales = _rows_int8(numpy_helper.to_array(table))
            made[table.name] = (f"{table.name}.int8", f"{table.name}.scale")
            graph.initializer.append(numpy_helper.from_array(values, made[table.name][0]))
            graph.initializer.append(numpy_helper.from_array(scales, made[table.name][1]))
        values, scales = made[table.name]
        ids, out = node.input[1], node.output[0]
        nodes += [
            helper.make_node("Gather", [values, ids], [f"{out}.int8"], name=f"{node.name}.int8"),
            helper.make_node(
                "Cast", [f"{out}.int8"], [f"{out}.float"], name=f"{node.name}.cast", to=1
            ),
            helper.make_node("Gather", [scales, ids], [f"{out}.scale"], name=f"{node.name}.scale"),
            helper.make_node(
                "Mul", [f"{out}.float", f"{out}.scale"], [out], name=f"{node.name}.dequantize"
            ),
        ]
        readers[table.name] -= 1
    del graph.node[:]
    graph.node.extend(nodes)
    unread = [t for t in graph.initializer if t.name in made and readers[t.name] == 0]
    for table in unread:
        graph.initializer.remove(table)
    return model


def int8_stored(model: onnx.ModelProto, op_types: tuple[str, ...] = FLOAT_ONLY) -> onnx.ModelProto:
    """A copy of ``model`` whose nodes of ``op_types`` (operators ONNX Runtime has no
    integer kernel of) read their float32 weights (inputs ``W`` and ``R``) as
    ``Cast(int8) * scale``, a scale per row (module docstring, pass 2)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type in op_types:
            for index in (1, 2):
                weight = weights.get(node.input[index]) if len(node.input) > index else None
                if weight is None or weight.data_type != TensorProto.FLOAT:
                    continue
                values, scales = _rows_int8(numpy_helper.to_array(weight))
                name = weight.name
                graph.initializer.remove(weight)
                del weights[name]
                graph.initializer.append(numpy_helper.from_array(values, f"{name}.int8"))
                graph.initializer.append(numpy_helper.from_array(scales, f"{name}.scale"))
                nodes += [
                    helper.make_node(
                        "Cast", [f"{name}.int8"], [f"{name}.float"], name=f"{name}.cast", to=1
                    ),
                    helper.make_node(
                        "Mul",
                        [f"{name}.float", f"{name}.scale"],
                        [f"{name}.dequantized"],
                        name=f"{name}.dequantize",
                    ),
                ]
                node.input[index] = f"{name}.dequantized"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _rows_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 values, float32 scales)`` with ``table ~= values * scales``, a scale per
    row (along the last axis, kept as a length-1 axis): each row's largest magnitude at
    127 (an all-zero row: scale 1)."""
    largest = np.abs(table).max(axis=-1, keepdims=True)
    scales = np.where(largest > 0, largest / 127.0, 1.0).astype(np.float32)
    values = np.clip(np.rint(table / scales), -127, 127).astype(np.int8)
    return values, scales
