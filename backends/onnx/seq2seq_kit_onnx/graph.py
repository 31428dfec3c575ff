"""A small builder of ONNX graphs (opset :data:`OPSET`) with ``onnx.helper``: nodes named
in order, weights as initializers, and typed graph inputs and outputs.

Only :mod:`.rnn` and :mod:`.transformer` use it, inside ``build`` and ``export``: importing
this module imports ``onnx``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The ONNX operator set of every graph: 17 is the first with ``LayerNormalization``.
OPSET = 17
#: The IR version written: 8, the first that opset 17 needs (read by onnxruntime >= 1.10).
IR_VERSION = 8

Dim = int | str
DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
DTYPE_NAMES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64", TensorProto.BOOL: "bool"}


class Graph:
    """Collects the nodes of one graph. Every method returning ``str`` returns the name of
    the tensor it adds."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._constants: dict[tuple, str] = {}
        self._count = 0

    def input(self, name: str, dtype: int, shape: Sequence[Dim]) -> str:
        """Declare a graph input of ``dtype`` (a ``TensorProto`` type) and ``shape``
        (ints, or names of symbolic dimensions)."""
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def output(self, value: str, name: str, dtype: int, shape: Sequence[Dim]) -> None:
        """Expose tensor ``value`` as the graph output ``name``."""
        self.nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))
        self.outputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))

    def weight(self, name: str, array: np.ndarray) -> str:
        """An initializer (a float32 weight, or an int64 table) named ``name``."""
        array = np.array(array, order="C")  # not ascontiguousarray: it makes scalars [1]
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, value) -> str:
        """A small constant (float32 for floats, int64 for ints), shared between uses."""
        array = np.asarray(value)
        array = array.astype(np.float32 if array.dtype.kind == "f" else np.int64)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.weight(f"const_{len(self._constants)}", array)
        return self._constants[key]

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes) -> str:
        """Add one node; returns its output's name (a tuple of names for ``outputs > 1``)."""
        self._count += 1
        names = [f"{op_type.lower()}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), names, name=f"{op_type}_{self._count}", **attributes
            )
        )
        return names[0] if outputs == 1 else tuple(names)

    # ------------------------------------------------------------------ common patterns

    def matmul(self, x: str, kernel: str, bias: str | None = None) -> str:
        """``x @ kernel (+ bias)`` over the last axis."""
        y = self.op("MatMul", x, kernel)
        return y if bias is None else self.op("Add", y, bias)

    def masked_softmax(self, scores: str, mask: str) -> str:
        """Softmax over the last axis where bool ``mask`` (broadcast to ``scores``) is
        true, exactly 0 elsewhere; a row without a true position is all 0 (the numpy
        reference's convention for an empty source)."""
        lowest = self.const(np.float32(np.finfo(np.float32).min))
        top = self.op("ReduceMax", self.op("Where", mask, scores, lowest), axes=[-1], keepdims=1)
        exp = self.op("Exp", self.op("Sub", scores, top))
        exp = self.op("Where", mask, exp, self.const(np.float32(0.0)))
        total = self.op("ReduceSum", exp, self.const([-1]), keepdims=1)
        total = self.op("Max", total, self.const(np.float32(np.finfo(np.float32).tiny)))
        return self.op("Div", exp, total)

    def log_softmax(self, logits: str) -> str:
        return self.op("LogSoftmax", logits, axis=-1)

    def model(self, doc: str = "") -> onnx.ModelProto:
        """The finished, checked model."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers, doc_string=doc
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="seq2seq-kit-onnx",
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def describe(values: Sequence[onnx.ValueInfoProto]) -> list[dict]:
    """``[{"name", "dtype", "shape"}]`` of graph inputs or outputs (symbolic dimensions by
    name), for ``export.json``."""
    described = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        described.append(
            {"name": value.name, "dtype": DTYPE_NAMES[tensor.elem_type], "shape": shape}
        )
    return described
