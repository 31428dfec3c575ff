"""The Transformer encoder-decoder (Vaswani et al. 2017) as ``torch.nn`` modules, with the
formulas of :mod:`seq2seq_kit.weights` and :class:`seq2seq_kit.spec.TransformerSpec`.

Written out rather than built from ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention``
so that the parameters map simply to the canonical layout (:mod:`.layout`: one
``nn.Linear`` per projection, the self-attention's query, key and value packed into one)
and so that masking follows the canonical rule exactly: a query that sees no key (an empty
source) gets zero weights and a zero context. Tensors are batch-major; attention works on
heads split out as ``[B, N, T, d]``.

:class:`Transformer` has the interface :mod:`.model` drives (shared with
:class:`.rnn.Seq2Seq`): ``forward`` (teacher-forced logits), ``encode``, ``step``,
``reorder``, ``attention`` and a ``generator`` for the dropout masks. Incremental decoding
keeps, per decoder layer, the self-attention keys and values of the positions so far and the
cross-attention keys and values of the encoder output (computed once by ``encode``), so a
step costs one position's projections plus attention over the cache (fairseq's
incremental state). A step runs :func:`decode_layer`, the decoder layer's formulas as torch
functions on the layer's parameters, because module dispatch would cost as much as the
arithmetic at small batches; the tests hold it to the modules' teacher-forced results.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.weights import LAYER_NORM_EPSILON, sinusoidal_positions

from .dropout import Dropout, optional

#: Keys and values of one attention, stacked: ``[2, B, N, S, d]`` (one tensor, so that a
#: decoding step extends a layer's cache with one ``torch.cat``).
KeyValue = torch.Tensor


class SourceMask(NamedTuple):
    """Which source positions a query may see, in the form attention takes.

    Attributes:
        visible: bool ``[B, 1, 1, S]``, True where a key may be attended to; rows of an
            empty source are all True (so that softmax stays finite) and zeroed through
            ``has_key``. None when every position of every row is visible.
        has_key: ``[B, 1, 1, 1]`` in the model's dtype, 0.0 for an empty source, 1.0
            otherwise; None when no source is empty.
    """

    visible: torch.Tensor | None
    has_key: torch.Tensor | None


def source_mask(lengths: torch.Tensor, width: int, dtype: torch.dtype) -> SourceMask:
    """The :class:`SourceMask` of int64 ``[B]`` ``lengths`` over ``width`` positions."""
    visible = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    if bool(visible.all()):
        return SourceMask(None, None)
    empty = lengths == 0
    has_key = None
    if bool(empty.any()):
        visible = visible | empty[:, None]
        has_key = (~empty).to(dtype)[:, None, None, None]
    return SourceMask(visible[:, None, None, :], has_key)


def _without_key_bias(grad: torch.Tensor, rows: slice) -> torch.Tensor:
    """``grad`` of a packed projection bias with the key bias's rows set to 0.

    Softmax ignores a shift shared by all keys of a query, and ``q . key.bias`` is one, so
    d loss / d key.bias is exactly 0; computed, it is rounding noise (~1e-9), which Adam's
    per-element normalisation would turn into steps of about the learning rate, different
    for each way of batching the same data."""
    grad = grad.clone()
    grad[rows] = 0.0
    return grad


def _drop(dropout: Dropout | None, x: torch.Tensor) -> torch.Tensor:
    return x if dropout is None else dropout(x)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2).

    Self-attention packs its query, key and value projections into ``qkv`` (``[3D, D]``);
    cross-attention has ``query`` and ``key_value`` (``[2D, D]``: the encoder output is
    projected once per source). ``output`` projects the concatenated heads.

    Contexts come from ``F.scaled_dot_product_attention``, except with ``attention_dropout``
    in training: then :meth:`weights` are computed explicitly and dropped out with masks
    from the model's generator (the fused kernel would draw from torch's global one).
    :meth:`weights` also serves :meth:`Transformer.attention`.

    The key bias's gradient is held at exactly 0 (see :func:`_without_key_bias`).
    """

    def __init__(self, spec: TransformerSpec, cross: bool, dropout: Dropout | None):
        super().__init__()
        width = spec.d_model
        self.heads, self.head_size = spec.num_heads, spec.head_size
        if cross:
            self.query = nn.Linear(width, width)
            self.key_value = nn.Linear(width, 2 * width)
            key_bias, rows = self.key_value.bias, slice(0, width)
        else:
            self.qkv = nn.Linear(width, 3 * width)
            key_bias, rows = self.qkv.bias, slice(width, 2 * width)
        self.output = nn.Linear(width, width)
        self.dropout = dropout
        key_bias.register_hook(functools.partial(_without_key_bias, rows=rows))

    def split(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """``[B, T, parts*D]`` -> ``[parts, B, N, T, d]``."""
        batch, steps, _ = x.shape
        return x.view(batch, steps, parts, self.heads, self.head_size).permute(2, 0, 3, 1, 4)

    def keys_values(self, memory: torch.Tensor) -> KeyValue:
        """Cross-attention keys and values of ``[B, S, D]`` memory: ``[2, B, N, S, d]``."""
        return self.split(self.key_value(memory), 2)

    def weights(
        self, q: torch.Tensor, k: torch.Tensor, mask: SourceMask | None, causal: bool = False
    ) -> torch.Tensor:
        """Attention weights ``[B, N, T, S]`` of queries ``[B, N, T, d]`` over keys
        ``[B, N, S, d]``: zero at hidden keys, and everywhere for a query that sees none.
        ``causal`` hides keys after each query (needs ``T == S``)."""
        scores = q @ k.transpose(-1, -2) * self.head_size**-0.5
        if causal:
            hidden = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(hidden, -math.inf)
        if mask is not None and mask.visible is not None:
            scores = scores.masked_fill(~mask.visible, -math.inf)
        weights = scores.softmax(dim=-1)
        if mask is not None and mask.has_key is not None:
            weights = weights * mask.has_key
        return weights

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: SourceMask | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """Queries ``[B, N, T, d]`` over keys and values ``[B, N, S, d]`` -> output
        ``[B, T, D]`` after the output projection. ``causal`` hides keys after each query
        (needs ``T == S``)."""
        if self.dropout is not None and self.training:
            context = self.dropout(self.weights(q, k, mask, causal)) @ v
        else:
            visible = None if mask is None else mask.visible
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, is_causal=causal)
            if mask is not None and mask.has_key is not None:
                context = context * mask.has_key
        batch, _, steps, _ = context.shape
        merged = context.transpose(1, 2).reshape(batch, steps, self.heads * self.head_size)
        return self.output(merged)


#: ``TransformerSpec.activation`` -> its function: ReLU, the exact (erf) GELU, and swish
#: ``h * sigmoid(h)`` (``F.silu``).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "swish": F.silu,
}


class FeedForward(nn.Module):
    """``act(x @ inner.kernel + inner.bias) @ outer.kernel + outer.bias`` (section 3.3)."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.inner = nn.Linear(spec.d_model, spec.ff_size)
        self.outer = nn.Linear(spec.ff_size, spec.d_model)
        self.activation = ACTIVATIONS[spec.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.activation(self.inner(x)))


class Layer(nn.Module):
    """What encoder and decoder layers share: the residual wiring of a sub-layer, pre-norm
    ``x + drop(f(norm(x)))`` or post-norm ``norm(x + drop(f(x)))``, and the feed-forward
    block."""

    def __init__(self, spec: TransformerSpec, dropout: Dropout | None):
        super().__init__()
        self.pre = spec.layer_norm == "pre"
        self.dropout = dropout
        self.feed_forward = FeedForward(spec)
        self.feed_forward_norm = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPSILON)

    def normed(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """The sub-layer input: ``norm(x)`` pre-norm, ``x`` post-norm."""
        return norm(x) if self.pre else x

    def residual(self, x: torch.Tensor, out: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """Add sub-layer output ``out`` to its input ``x`` (dropout on ``out``)."""
        x = x + _drop(self.dropout, out)
        return x if self.pre else norm(x)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward sub-layer with its residual."""
        norm = self.feed_forward_norm
        return self.residual(x, self.feed_forward(self.normed(x, norm)), norm)


class EncoderLayer(Layer):
    """Self-attention over the source, then the feed-forward block."""

    def __init__(self, spec: TransformerSpec, dropout: Dropout | None, attention: Dropout | None):
        super().__init__(spec, dropout)
        self.self_attention = MultiHeadAttention(spec, False, attention)
        self.self_attention_norm = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPSILON)

    def forward(self, x: torch.Tensor, mask: SourceMask) -> torch.Tensor:
        norm = self.self_attention_norm
        q, k, v = self.self_attention.split(self.self_attention.qkv(self.normed(x, norm)), 3)
        x = self.residual(x, self.self_attention.attend(q, k, v, mask), norm)
        return self.feed(x)


class DecoderLayer(Layer):
    """Causal self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, spec: TransformerSpec, dropout: Dropout | None, attention: Dropout | None):
        super().__init__(spec, dropout)
        self.self_attention = MultiHeadAttention(spec, False, attention)
        self.self_attention_norm = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPSILON)
        self.cross_attention = MultiHeadAttention(spec, True, attention)
        self.cross_attention_norm = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPSILON)

    def forward(self, x: torch.Tensor, cross: KeyValue, mask: SourceMask) -> torch.Tensor:
        """``[B, T, D]`` inputs at positions ``0 .. T-1`` -> ``[B, T, D]`` outputs, with
        causal self-attention and cross-attention over keys and values ``cross``
        ``[2, B, N, S, d]`` (incremental decoding is :func:`decode_layer`)."""
        attention, norm = self.self_attention, self.self_attention_norm
        q, k, v = attention.split(attention.qkv(self.normed(x, norm)), 3)
        x = self.residual(x, attention.attend(q, k, v, causal=True), norm)
        attention, norm = self.cross_attention, self.cross_attention_norm
        query = attention.split(attention.query(self.normed(x, norm)), 1)[0]
        x = self.residual(x, attention.attend(query, cross[0], cross[1], mask), norm)
        return self.feed(x)

    def tensors(self) -> LayerTensors:
        """This layer's parameters for :func:`decode_layer` (the parameters themselves, so
        they follow every update)."""

        def pair(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            return module.weight, module.bias

        return LayerTensors(
            pair(self.self_attention_norm),
            pair(self.self_attention.qkv),
            pair(self.self_attention.output),
            pair(self.cross_attention_norm),
            pair(self.cross_attention.query),
            pair(self.cross_attention.output),
            pair(self.feed_forward_norm),
            pair(self.feed_forward.inner),
            pair(self.feed_forward.outer),
            self.pre,
            self.self_attention.heads,
            self.feed_forward.activation,
        )


class LayerTensors(NamedTuple):
    """A decoder layer's ``(weight, bias)`` pairs and settings as plain values, so that a
    decoding step calls torch functions directly: module dispatch and attribute look-ups
    were about half of a step's time at batch 1."""

    self_attention_norm: tuple[torch.Tensor, torch.Tensor]
    qkv: tuple[torch.Tensor, torch.Tensor]
    self_output: tuple[torch.Tensor, torch.Tensor]
    cross_attention_norm: tuple[torch.Tensor, torch.Tensor]
    query: tuple[torch.Tensor, torch.Tensor]
    cross_output: tuple[torch.Tensor, torch.Tensor]
    feed_forward_norm: tuple[torch.Tensor, torch.Tensor]
    inner: tuple[torch.Tensor, torch.Tensor]
    outer: tuple[torch.Tensor, torch.Tensor]
    pre: bool
    heads: int
    activation: Callable[[torch.Tensor], torch.Tensor]


def _sublayer_input(x: torch.Tensor, norm: tuple, pre: bool) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], *norm, LAYER_NORM_EPSILON) if pre else x


def _residual(x: torch.Tensor, out: torch.Tensor, norm: tuple, pre: bool) -> torch.Tensor:
    x = x + out
    return x if pre else F.layer_norm(x, x.shape[-1:], *norm, LAYER_NORM_EPSILON)


def decode_layer(
    t: LayerTensors, x: torch.Tensor, cache: KeyValue, cross: KeyValue, mask: SourceMask
) -> tuple[torch.Tensor, KeyValue, torch.Tensor]:
    """One decoder layer at one new position: :meth:`DecoderLayer.forward`'s formulas for
    ``[B, D]`` inputs ``x`` whose position sees every cached one and itself.

    Returns (outputs ``[B, D]``, the self-attention keys and values ``[2, B, N, t+1, d]``
    with this position appended to ``cache`` ``[2, B, N, t, d]`` (not modified), the
    cross-attention queries ``[B, N, 1, d]``)."""
    batch, width = x.shape
    size = width // t.heads
    h = _sublayer_input(x, t.self_attention_norm, t.pre)
    qkv = F.linear(h, *t.qkv).view(batch, 3, t.heads, 1, size)
    kv = torch.cat((cache, qkv[:, 1:].transpose(0, 1)), dim=3)
    context = F.scaled_dot_product_attention(qkv[:, 0], kv[0], kv[1])
    out = F.linear(context.reshape(batch, width), *t.self_output)
    x = _residual(x, out, t.self_attention_norm, t.pre)
    h = _sublayer_input(x, t.cross_attention_norm, t.pre)
    query = F.linear(h, *t.query).view(batch, t.heads, 1, size)
    context = F.scaled_dot_product_attention(query, cross[0], cross[1], attn_mask=mask.visible)
    if mask.has_key is not None:
        context = context * mask.has_key
    out = F.linear(context.reshape(batch, width), *t.cross_output)
    x = _residual(x, out, t.cross_attention_norm, t.pre)
    h = _sublayer_input(x, t.feed_forward_norm, t.pre)
    out = F.linear(t.activation(F.linear(h, *t.inner)), *t.outer)
    return _residual(x, out, t.feed_forward_norm, t.pre), kv, query


class Output(nn.Module):
    """The output projection's parameters: ``weight`` ``[V, D]`` (None when tied to the
    target embedding) and ``bias`` ``[V]``."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        weight = None
        if not spec.tie_output_embeddings:
            weight = nn.Parameter(torch.empty(spec.tgt_vocab_size, spec.d_model))
        self.register_parameter("weight", weight)
        self.bias = nn.Parameter(torch.zeros(spec.tgt_vocab_size))


class Stack(nn.Module):
    """What both sides share: the embedded input ``embedding[id] * sqrt(D) + position[t]``
    (section 3.4) with dropout, a stack of layers, and (pre-norm) the final norm.

    Attributes:
        embedding: the side's ``nn.Embedding``.
        positions: ``nn.Embedding(max_positions, D)`` for learned positions, else None
            (the sinusoids are the buffer ``sinusoids``, not a weight).
        final_norm: ``nn.LayerNorm`` for ``layer_norm = "pre"``, else None.
    """

    def __init__(self, spec: TransformerSpec, embedding: nn.Embedding, dropout: Dropout | None):
        super().__init__()
        self.embedding = embedding
        self.positions = None
        if spec.stored_positions:
            self.positions = nn.Embedding(spec.max_positions, spec.d_model)
        else:
            table = sinusoidal_positions(spec.max_positions, spec.d_model)
            self.register_buffer("sinusoids", torch.from_numpy(table), persistent=False)
        self.scale = math.sqrt(spec.d_model)
        self.dropout = dropout
        self.final_norm = None
        if spec.layer_norm == "pre":
            self.final_norm = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPSILON)

    def embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """int64 ``[B, T]`` ids at positions ``start ..`` -> ``[B, T, D]`` inputs."""
        table = self.sinusoids if self.positions is None else self.positions.weight
        # F.embedding, not the module: this runs at every decoding step.
        x = F.embedding(ids, self.embedding.weight) * self.scale
        x = x + table[start : start + ids.shape[1]]
        if self.dropout is not None and self.training:
            x = self.dropout(x)
        return x

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        """The stack's output: ``x`` through the final norm, if any."""
        return x if self.final_norm is None else self.final_norm(x)


class Encoder(Stack):
    """The source side."""

    def __init__(self, spec: TransformerSpec, dropout: Dropout | None, attention: Dropout | None):
        super().__init__(spec, nn.Embedding(spec.src_vocab_size, spec.d_model), dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(spec, dropout, attention) for _ in range(spec.encoder_layers)
        )

    def forward(self, ids: torch.Tensor, mask: SourceMask) -> torch.Tensor:
        """int64 ``[B, S]`` ids -> ``[B, S, D]`` outputs (meaningless past each length)."""
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, mask)
        return self.normed(x)


class Decoder(Stack):
    """The target side, with the output projection.

    Attributes:
        output: the :class:`Output` parameters.
    """

    def __init__(
        self,
        spec: TransformerSpec,
        shared: nn.Embedding | None,
        dropout: Dropout | None,
        attention: Dropout | None,
    ):
        # A shared table is registered under the encoder first, so that named_parameters
        # (which skips repeats) calls it ``encoder.embedding.weight``.
        embedding = shared or nn.Embedding(spec.tgt_vocab_size, spec.d_model)
        super().__init__(spec, embedding, dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(spec, dropout, attention) for _ in range(spec.decoder_layers)
        )
        self.output = Output(spec)

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """Top-layer outputs ``[..., D]`` -> logits ``[..., V]`` (final norm first)."""
        weight = self.embedding.weight if self.output.weight is None else self.output.weight
        return F.linear(self.normed(y), weight, self.output.bias)


class TransformerState(NamedTuple):
    """The decoder state of :meth:`Transformer.encode` and :meth:`Transformer.step`.

    Attributes:
        cache: per decoder layer, self-attention keys and values ``[2, B, N, t, d]`` of
            the ``t`` positions decoded so far.
        cross: per decoder layer, cross-attention keys and values ``[2, B, N, S', d]`` of
            the encoder output (``S'`` the longest source, at least 1).
        mask: the :class:`SourceMask` of the sources over ``S'``.
        position: ``t``, the position the next step decodes.
        query: ``[B, N, 1, d]`` top-layer cross-attention queries of the step that produced
            this state, None from ``encode``: :meth:`Transformer.attention` computes the
            weights from them only when asked (decoding rarely asks; it saves a step the
            explicit attention the fused kernel does not return).
        source_width: ``S``, the width of the ``src_ids`` encoded.
    """

    cache: tuple[KeyValue, ...]
    cross: tuple[KeyValue, ...]
    mask: SourceMask
    position: int
    query: torch.Tensor | None
    source_width: int


class Transformer(nn.Module):
    """The encoder-decoder with teacher forcing and incremental decoding.

    Attributes:
        encoder, decoder: the :class:`Encoder` and :class:`Decoder`.
        generator: the ``torch.Generator`` every dropout mask comes from (re-seeded before
            each training batch).
    """

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.generator = torch.Generator()
        dropout = optional(spec.dropout, self.generator)
        attention = optional(spec.attention_dropout, self.generator)
        self.encoder = Encoder(spec, dropout, attention)
        shared = self.encoder.embedding if spec.share_embeddings else None
        self.decoder = Decoder(spec, shared, dropout, attention)
        # Built at the first step (after any dtype conversion); a plain list, not modules.
        self._layer_tensors: list[LayerTensors] | None = None

    def memory(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, SourceMask]:
        """int64 ``[B, S]`` ids and ``[B]`` lengths -> (encoder output ``[B, S', D]``, its
        :class:`SourceMask`), ``S'`` the longest length, at least 1 (positions past it
        change no result: every query hides them)."""
        width = max(1, int(src_lengths.max())) if src_lengths.numel() else 1
        if src_ids.shape[1] < width:  # an empty source of width 0: one PAD position
            src_ids = src_ids.new_zeros(src_ids.shape[0], width)
        src_ids = src_ids[:, :width]
        mask = source_mask(src_lengths, width, self.decoder.output.bias.dtype)
        return self.encoder(src_ids, mask), mask

    def forward(
        self,
        src_ids: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """int64 ``[B, S]`` sources, ``[B]`` lengths, ``[B, T]`` decoder inputs ->
        teacher-forced logits ``[B, T, V_tgt]``, or ``[K, V_tgt]`` at the int64 ``[K]``
        flat ``positions`` of ``[B, T]`` only (the loss skips padding's final norm and
        output layer, the largest matmul with a large vocabulary)."""
        memory, mask = self.memory(src_ids, src_lengths)
        x = self.decoder.embed(tgt_in)
        for layer in self.decoder.layers:
            x = layer(x, layer.cross_attention.keys_values(memory), mask)
        if positions is not None:
            x = x.flatten(0, 1).index_select(0, positions)
        return self.decoder.logits(x)

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> TransformerState:
        """The decoder's initial :class:`TransformerState`: empty self-attention caches,
        each layer's cross-attention keys and values."""
        memory, mask = self.memory(src_ids, src_lengths)
        # Contiguous once here rather than strided at every step.
        cross = tuple(
            layer.cross_attention.keys_values(memory).contiguous() for layer in self.decoder.layers
        )
        two, batch, heads, _, size = cross[0].shape
        empty = cross[0].new_zeros((two, batch, heads, 0, size))
        return TransformerState((empty,) * len(cross), cross, mask, 0, None, src_ids.shape[1])

    def step(
        self, prev_ids: torch.Tensor, state: TransformerState
    ) -> tuple[torch.Tensor, TransformerState]:
        """int64 ``[B]`` previous ids -> (logits ``[B, V_tgt]`` of the next token, the new
        state); ``state`` is not modified."""
        if self._layer_tensors is None:
            self._layer_tensors = [layer.tensors() for layer in self.decoder.layers]
        x = self.decoder.embed(prev_ids[:, None], state.position)[:, 0]
        cache = []
        for index, tensors in enumerate(self._layer_tensors):
            x, kv, query = decode_layer(
                tensors, x, state.cache[index], state.cross[index], state.mask
            )
            cache.append(kv)
        logits = self.decoder.logits(x)
        return logits, state._replace(
            cache=tuple(cache),
            position=state.position + 1,
            query=query,
        )

    def attention(self, state: TransformerState) -> torch.Tensor | None:
        """``[B, S']`` cross-attention weights of the top decoder layer, averaged over heads
        (fairseq's choice), of the step that produced ``state``; None from ``encode``."""
        if state.query is None:
            return None
        layer = self.decoder.layers[-1].cross_attention
        weights = layer.weights(state.query, state.cross[-1][0], state.mask)
        return weights[:, :, 0].mean(dim=1)

    @staticmethod
    def reorder(state: TransformerState, index: torch.Tensor) -> TransformerState:
        """Rows ``index`` (int64 ``[B']``) of every tensor in ``state``, as a new state."""

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        return state._replace(
            cache=tuple(kv.index_select(1, index) for kv in state.cache),
            cross=tuple(kv.index_select(1, index) for kv in state.cross),
            mask=SourceMask(take(state.mask.visible), take(state.mask.has_key)),
            query=take(state.query),
        )
