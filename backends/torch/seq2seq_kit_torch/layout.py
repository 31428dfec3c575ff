"""The canonical weight layout of :mod:`seq2seq_kit.weights` <-> the torch parameters of
:mod:`.rnn` and :mod:`.transformer`, for the parameters themselves, their gradients and
their Adam moments alike (every mapping is linear in the tensors it moves).

RNN (``l`` is the layer)::

    {side}.embedding                  = {side}.embedding.weight
    {side}.rnn.{l}.*                  from {side}.rnn.{l}.*_l0          (see .lstm, .gru)
    encoder.rnn_reverse.{l}.*         from encoder.rnn.{l}.*_l0_reverse
    decoder.attention.*               from decoder.attention.*          (see .attention)
    decoder.output.kernel             = decoder.output.weight.T
    decoder.output.bias               = decoder.output.bias

Transformer: the parameter of a canonical name is the name itself, with ``X.kernel =
X.weight.T`` (``nn.Linear``), ``X.scale = X.weight`` (``nn.LayerNorm``) and ``X.embedding`` /
``X.positions`` the ``.weight`` of an ``nn.Embedding``, except that attention projections
sharing an input are packed row-wise into one ``nn.Linear`` (one matmul instead of three)::

    {prefix}.self_attention.{query,key,value}.kernel  = rows [iD, (i+1)D) of
                                                         {prefix}.self_attention.qkv.weight, .T
    {prefix}.cross_attention.{key,value}.kernel       = rows of ...cross_attention.key_value.weight
    (biases likewise, from .qkv.bias and .key_value.bias)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

import torch

from seq2seq_kit.spec import ModelSpec, Spec, TransformerSpec
from seq2seq_kit.weights import weight_shapes

from .rnn import CELLS

#: Per direction of a recurrent layer, the parameters the cell modules map.
RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass(frozen=True)
class Entry:
    """How one canonical tensor sits in one torch parameter.

    Attributes:
        canonical: the canonical name.
        param: the torch parameter's name (as ``named_parameters`` gives it).
        transposed: the canonical tensor is the transpose of the (selected) parameter.
        rows: ``(start, stop)`` of the parameter's leading axis holding this tensor, or
            None for the whole parameter.
    """

    canonical: str
    param: str
    transposed: bool = False
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Direction:
    """One direction of one recurrent layer: canonical ``{canonical}{kernel,...}`` from
    parameters ``{prefix}{weight_ih,...}{suffix}`` through the cell module's mapping."""

    canonical: str
    prefix: str
    suffix: str


class Layout:
    """The mapping of one spec: ``to_canonical`` and ``from_canonical`` over dicts of
    tensors.

    Attributes:
        shapes: the canonical ``name -> shape`` map (:func:`weight_shapes`), in order.
        entries: every canonical tensor that sits in a parameter as a (part of a) matrix.
        directions: recurrent layers' directions (RNN only), mapped by ``cell``.
        cell: :mod:`.lstm` or :mod:`.gru`, or None for a Transformer.
    """

    def __init__(self, spec: Spec):
        self.shapes = weight_shapes(spec)
        self.cell: ModuleType | None = None
        self.directions: list[Direction] = []
        if isinstance(spec, TransformerSpec):
            self.entries = [_transformer_entry(name, spec.d_model) for name in self.shapes]
        else:
            self.cell = CELLS[spec.cell]
            self.entries = _rnn_entries(spec)
            self.directions = _rnn_directions(spec)

    def to_canonical(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-parameter tensors (the parameters, their gradients or Adam moments, by
        parameter name) -> canonical name -> tensor (views where possible), in
        :func:`weight_shapes` order."""
        out = {}
        for entry in self.entries:
            value = tensors[entry.param]
            if entry.rows is not None:
                value = value[entry.rows[0] : entry.rows[1]]
            out[entry.canonical] = value.T if entry.transposed else value
        for direction in self.directions:
            parts = {k: tensors[f"{direction.prefix}{k}{direction.suffix}"] for k in RNN_PARAMS}
            for key, value in self.cell.to_canonical(parts).items():
                out[direction.canonical + key] = value
        return {name: out[name] for name in self.shapes}

    def from_canonical(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`to_canonical`: canonical name -> tensor, to parameter
        name -> tensor (for every parameter, the frozen LSTM ``bias_hh`` included)."""
        out: dict[str, torch.Tensor] = {}
        packed: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for entry in self.entries:
            value = tensors[entry.canonical]
            value = value.T if entry.transposed else value
            if entry.rows is None:
                out[entry.param] = value
            else:
                packed.setdefault(entry.param, []).append((entry.rows[0], value))
        for param, pieces in packed.items():
            out[param] = torch.cat([value for _, value in sorted(pieces, key=lambda p: p[0])])
        for direction in self.directions:
            parts = {
                k: tensors[direction.canonical + k] for k in ("kernel", "recurrent_kernel", "bias")
            }
            for key, value in self.cell.from_canonical(parts).items():
                out[f"{direction.prefix}{key}{direction.suffix}"] = value
        return out


#: Attention projections packed into one parameter: (block, part) -> (packed name, index).
_PACKED = {
    ("self_attention", "query"): ("qkv", 0),
    ("self_attention", "key"): ("qkv", 1),
    ("self_attention", "value"): ("qkv", 2),
    ("cross_attention", "key"): ("key_value", 0),
    ("cross_attention", "value"): ("key_value", 1),
}
_ATTENTION = re.compile(r"^(.*\.(self_attention|cross_attention))\.(\w+)\.(kernel|bias)$")


def _transformer_entry(name: str, width: int) -> Entry:
    """The :class:`Entry` of canonical ``name`` in a :mod:`.transformer` network."""
    match = _ATTENTION.match(name)
    if match and (match[2], match[3]) in _PACKED:
        packed, index = _PACKED[match[2], match[3]]
        kind = "weight" if match[4] == "kernel" else "bias"
        rows = (index * width, (index + 1) * width)
        return Entry(name, f"{match[1]}.{packed}.{kind}", match[4] == "kernel", rows)
    if name.endswith((".embedding", ".positions")):
        return Entry(name, f"{name}.weight")
    if name.endswith(".kernel"):
        return Entry(name, name.removesuffix(".kernel") + ".weight", True)
    if name.endswith(".scale"):
        return Entry(name, name.removesuffix(".scale") + ".weight")
    return Entry(name, name)


def _rnn_entries(spec: ModelSpec) -> list[Entry]:
    """Every weight of an RNN outside the recurrent layers."""
    entries = [
        Entry(f"{side}.embedding", f"{side}.embedding.weight")
        for side in ("encoder", "decoder")
        if spec.embedding_size
    ]
    att = "decoder.attention."
    if spec.attention == "general":
        entries.append(Entry(att + "kernel", att + "linear_in.weight", True))
    elif spec.attention == "bahdanau":
        entries += [
            Entry(att + "query_kernel", att + "linear_query.weight", True),
            Entry(att + "memory_kernel", att + "linear_context.weight", True),
            Entry(att + "v", att + "v"),
        ]
    if spec.attention != "none":
        entries.append(Entry(att + "output_kernel", att + "linear_out.weight", True))
    entries += [
        Entry("decoder.output.kernel", "decoder.output.weight", True),
        Entry("decoder.output.bias", "decoder.output.bias"),
    ]
    return entries


def _rnn_directions(spec: ModelSpec) -> list[Direction]:
    """Every direction of every recurrent layer."""
    out = []
    for side in ("encoder", "decoder"):
        directions = [("rnn", "_l0")]
        if side == "encoder" and spec.bidirectional:
            directions.append(("rnn_reverse", "_l0_reverse"))
        for layer in range(spec.num_layers):
            for direction, suffix in directions:
                out.append(
                    Direction(f"{side}.{direction}.{layer}.", f"{side}.rnn.{layer}.", suffix)
                )
    return out
