"""int8 graphs: the encoder and decoder-step graphs of :mod:`.rnn` and :mod:`.transformer`
with 8-bit weights, for ONNX Runtime's integer kernels. Two passes over a float32 graph:

1. Lookup tables (every float32 initializer a ``Gather`` reads rows of: the embeddings,
   the one-hot identity, a position table) become int8 with one float32 scale per row,
   ``127 / max |row|`` as CTranslate2 scales its weights; the ``Gather`` becomes
   ``Gather(int8) -> Cast -> Mul(Gather(scales))``, exact up to rounding. ONNX Runtime's
   own dynamic quantization has one scale per table, which the rare large rows of an
   embedding decide: on the Tatoeba Transformer its greedy outputs left float32's on 5% of
   the sources, against 2% with a scale per row.
2. ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``,
   https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html) of the
   ``MatMul`` nodes whose second input is a weight (``MatMulInteger``: int8 weights with a
   scale per output column, the activations quantized to uint8 per call with their own
   range, int32 accumulation) and of the ``LSTM`` encoder (``DynamicQuantizeLSTM``).

What stays float32: every bias, layer norm, attention score and softmax, the log-softmax,
the matrix products of two activations (attention), and the ``GRU`` encoder (ONNX Runtime
has no integer GRU; the decoder's cells, spelled out as ``MatMul``, are int8 in both).
Importing this module imports ``onnx``; quantizing imports ``onnxruntime.quantization``.
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

    tables = int8_tables(model)
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


def _rows_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 [V, D], float32 [V, 1] scales)`` with ``table ~= values * scales``: each
    row's largest magnitude at 127 (an all-zero row: scale 1)."""
    largest = np.abs(table).max(axis=1, keepdims=True)
    scales = np.where(largest > 0, largest / 127.0, 1.0).astype(np.float32)
    values = np.clip(np.rint(table / scales), -127, 127).astype(np.int8)
    return values, scales
