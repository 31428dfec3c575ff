"""The Transformer encoder-decoder (Vaswani et al. 2017) as Keras layers: :class:`Transformer`.

The maths and the weights are those of :class:`seq2seq_kit.spec.TransformerSpec` and the
Transformer layout of :mod:`seq2seq_kit.weights`, each weight a Keras variable in the
canonical form (:mod:`.layout` names them): projections are ``Dense`` layers, whose
``kernel`` [In, Out] acts on row vectors as the canonical kernels do, heads are column
blocks of their outputs, norms are ``LayerNormalization(epsilon=1e-5)`` (Keras' default of
1e-3 would not be the layout's norm) with ``gamma``/``beta`` the canonical ``scale``/``bias``.

Keras' ``MultiHeadAttention`` is not used: its kernels are [D, N, d] einsum tensors, and it
masks by adding a large negative number, which gives a query with no visible key uniform
weights instead of the zero weights and zero context the layout asks for.

The decoder state (:class:`Cache`) holds per decoder layer the self-attention keys and
values of the positions so far and the cross-attention keys and values of the encoder
output (computed once, by :meth:`Transformer.encode`), and the source mask. The next
position is the length of the self-attention caches. Tensors are never updated in place:
:meth:`Transformer.step` returns caches one position longer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf
from keras import layers, ops

from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.weights import LAYER_NORM_EPSILON, sinusoidal_positions

from .attention import masked_score
from .dropout import Dropout


class Cache(NamedTuple):
    """The Transformer's decoder state. Per decoder layer, bottom first: float32
    ``self_keys`` / ``self_values`` [B, N, t, d] (t = positions decoded so far, the next
    position), ``cross_keys`` / ``cross_values`` [B, N, S, d]; and ``source_mask``, bool
    [B, S], True at real source positions."""

    self_keys: tuple[tf.Tensor, ...]
    self_values: tuple[tf.Tensor, ...]
    cross_keys: tuple[tf.Tensor, ...]
    cross_values: tuple[tf.Tensor, ...]
    source_mask: tf.Tensor


def _norm(name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)


class MultiHeadAttention(layers.Layer):
    """Scaled dot-product attention with ``num_heads`` heads (Vaswani et al. 2017, section
    3.2): ``Dense`` layers ``query``, ``key``, ``value``, ``output`` of ``d_model`` units."""

    def __init__(self, d_model: int, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads = d_model, num_heads
        self.head_size = d_model // num_heads
        self.query = layers.Dense(d_model, name="query")
        self.key = layers.Dense(d_model, name="key")
        self.value = layers.Dense(d_model, name="value")
        self.output_layer = layers.Dense(d_model, name="output")

    def build(self, input_shape=None):
        for dense in (self.query, self.key, self.value, self.output_layer):
            dense.build((None, self.d_model))
        self.built = True

    def _heads(self, dense: layers.Dense, x):
        """``dense(x)`` for [B, T, D] ``x``, split into heads: [B, N, T, d]."""
        return self._split(dense(x))

    def _split(self, y):
        """[B, T, D] -> [B, N, T, d]: head n is feature columns [n*d, (n+1)*d)."""
        batch, steps = ops.shape(y)[0], ops.shape(y)[1]
        y = ops.reshape(y, (batch, steps, self.num_heads, self.head_size))
        return ops.transpose(y, (0, 2, 1, 3))

    def keys_values(self, memory):
        """Keys and values of [B, S, D] ``memory``: two [B, N, S, d] tensors.

        The key bias adds ``q . bias`` to every score of a query, which the softmax cancels:
        its true gradient is zero, so none flows into it. Left to rounding it would be
        ~1e-9, which Adam, normalising each weight's step, turns into moves of up to the
        learning rate that differ between two orders of summation (one batch or an
        accumulated list)."""
        keys = ops.matmul(memory, self.key.kernel) + ops.stop_gradient(self.key.bias)
        return self._split(keys), self._heads(self.value, memory)

    def call(self, x, keys, values, visible, dropout: Dropout | None = None, rate: float = 0.0):
        """Queries [B, T, D] over ``keys``/``values`` [B, N, S, d] with bool ``visible``
        broadcastable to [B, 1, T, S] (True: the query sees the key; None: all visible) ->
        (output [B, T, D], weights [B, N, T, S]). A query with no visible key gets zero
        weights and a zero context (Vaswani et al. 2017, eq. 1, with that rule added);
        attention dropout at ``rate`` applies to the weights used, not those returned."""
        q = self._heads(self.query, x)
        scores = ops.einsum("bntd,bnsd->bnts", q, keys) / math.sqrt(self.head_size)
        if visible is not None:
            scores = ops.where(visible, scores, masked_score(scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        if visible is not None:
            # A row with no visible key softmaxes to uniform weights; the mask zeroes them.
            weights = weights * ops.cast(visible, weights.dtype)
        used = weights if dropout is None else dropout(weights, rate)
        context = ops.transpose(ops.einsum("bnts,bnsd->bntd", used, values), (0, 2, 1, 3))
        batch, steps = ops.shape(x)[0], ops.shape(x)[1]
        context = ops.reshape(context, (batch, steps, self.d_model))
        return self.output_layer(context), weights


class FeedForward(layers.Layer):
    """``act(x @ inner.kernel + inner.bias) @ outer.kernel + outer.bias`` (section 3.3);
    ReLU, GELU in its exact erf form, or swish ``h * sigmoid(h)`` (``ops.silu``)."""

    def __init__(self, d_model: int, ff_size: int, activation: str, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.ff_size, self.activation = d_model, ff_size, activation
        self.inner = layers.Dense(ff_size, name="inner")
        self.outer = layers.Dense(d_model, name="outer")

    def build(self, input_shape=None):
        self.inner.build((None, self.d_model))
        self.outer.build((None, self.ff_size))
        self.built = True

    def call(self, x):
        h = self.inner(x)
        if self.activation == "relu":
            h = ops.relu(h)
        elif self.activation == "swish":
            h = ops.silu(h)
        else:
            h = ops.gelu(h, approximate=False)
        return self.outer(h)


class _Block(layers.Layer):
    """One encoder or decoder layer: its sub-layers, each with its norm and residual."""

    def __init__(self, spec: TransformerSpec, cross: bool, **kwargs):
        super().__init__(**kwargs)
        self.pre = spec.layer_norm == "pre"
        self.attention_dropout = spec.attention_dropout
        d, n = spec.d_model, spec.num_heads
        self.self_attention = MultiHeadAttention(d, n, name="self_attention")
        self.self_attention_norm = _norm("self_attention_norm")
        self.cross_attention = MultiHeadAttention(d, n, name="cross_attention") if cross else None
        self.cross_attention_norm = _norm("cross_attention_norm") if cross else None
        self.feed_forward = FeedForward(d, spec.ff_size, spec.activation, name="feed_forward")
        self.feed_forward_norm = _norm("feed_forward_norm")
        self.d_model = d

    def build(self, input_shape=None):
        for layer in self._sublayers():
            layer.build((None, self.d_model))
        self.built = True

    def _sublayers(self):
        return [
            layer
            for layer in (
                self.self_attention,
                self.self_attention_norm,
                self.cross_attention,
                self.cross_attention_norm,
                self.feed_forward,
                self.feed_forward_norm,
            )
            if layer is not None
        ]

    def _residual(self, x, norm, sublayer, dropout: Dropout | None):
        """``x + drop(sublayer(norm(x)))`` (pre-norm) or ``norm(x + drop(sublayer(x)))``
        (post-norm); ``sublayer`` returns (output, extra) and the extra is passed on."""
        y, extra = sublayer(norm(x) if self.pre else x)
        if dropout is not None:
            y = dropout(y)
        return (x + y if self.pre else norm(x + y)), extra

    def _attend(self, attention, keys_values, visible, dropout: Dropout | None):
        """The sub-layer function of ``attention``, returning (output, (weights, keys,
        values)); ``keys_values(h)`` gives the keys and values from the sub-layer input
        ``h``."""

        def sublayer(h):
            keys, values = keys_values(h)
            out, weights = attention(
                h,
                keys=keys,
                values=values,
                visible=visible,
                dropout=dropout,
                rate=self.attention_dropout,
            )
            return out, (weights, keys, values)

        return sublayer

    def feed(self, x, dropout: Dropout | None):
        return self._residual(
            x, self.feed_forward_norm, lambda h: (self.feed_forward(h), None), dropout
        )[0]


class EncoderLayer(_Block):
    """Self-attention over the real source positions, then the feed-forward block."""

    def __init__(self, spec: TransformerSpec, **kwargs):
        super().__init__(spec, cross=False, **kwargs)

    def call(self, x, visible, dropout: Dropout | None = None):
        """[B, S, D] inputs, bool ``visible`` [B, 1, 1, S] (real source positions) -> [B, S,
        D] outputs."""
        own = self._attend(self.self_attention, self.self_attention.keys_values, visible, dropout)
        x, _ = self._residual(x, self.self_attention_norm, own, dropout)
        return self.feed(x, dropout)


class DecoderLayer(_Block):
    """Causal self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, spec: TransformerSpec, **kwargs):
        super().__init__(spec, cross=True, **kwargs)

    def call(self, x, self_mask, past, cross, cross_mask, dropout: Dropout | None = None):
        """[B, T, D] inputs -> (outputs [B, T, D], cross-attention weights [B, N, T, S],
        self-attention keys and values [B, N, t + T, d]).

        ``past`` is None (teacher forcing: the keys and values are those of ``x``, hidden by
        the causal ``self_mask`` [1, 1, T, T]) or the cached ``(keys, values)`` [B, N, t, d]
        of the t earlier positions, to which those of ``x`` are appended (one step: every
        key is visible, ``self_mask`` None). ``cross`` is the encoder output's ``(keys,
        values)`` [B, N, S, d], ``cross_mask`` bool [B, 1, 1, S].
        """

        def own_keys_values(h):
            keys, values = self.self_attention.keys_values(h)
            if past is not None:
                keys = ops.concatenate([past[0], keys], axis=2)
                values = ops.concatenate([past[1], values], axis=2)
            return keys, values

        own = self._attend(self.self_attention, own_keys_values, self_mask, dropout)
        x, (_, keys, values) = self._residual(x, self.self_attention_norm, own, dropout)
        other = self._attend(self.cross_attention, lambda h: cross, cross_mask, dropout)
        x, (weights, _, _) = self._residual(x, self.cross_attention_norm, other, dropout)
        return self.feed(x, dropout), weights, (keys, values)


class TiedOutput(layers.Layer):
    """Logits ``y @ E.T + bias`` with ``E`` the target embedding table (Press & Wolf 2017);
    owns only the canonical ``decoder.output.bias``."""

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size

    def build(self, input_shape=None):
        self.bias = self.add_weight((self.vocab_size,), initializer="zeros", name="bias")
        self.built = True

    def call(self, y, embeddings):
        return ops.matmul(y, ops.transpose(embeddings)) + self.bias


class Transformer(layers.Layer):
    """Encoder and decoder behind the interface :class:`..model.KerasModel` drives (shared
    with :class:`.rnn.Seq2Seq`): ``call``, ``encode``, ``step`` and ``state_signature``.

    Inputs are ``embedding[id] * sqrt(D) + position[t]`` (section 3.4); positions count
    from 0 on each side.
    """

    def __init__(self, spec: TransformerSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        d = spec.d_model
        self.scale = math.sqrt(d)
        self.source_embedding = layers.Embedding(spec.src_vocab_size, d, name="encoder_embedding")
        self.target_embedding = (
            self.source_embedding
            if spec.share_embeddings
            else layers.Embedding(spec.tgt_vocab_size, d, name="decoder_embedding")
        )
        self.source_positions = self.target_positions = None
        if spec.stored_positions:
            p = spec.max_positions
            self.source_positions = layers.Embedding(p, d, name="encoder_positions")
            self.target_positions = layers.Embedding(p, d, name="decoder_positions")
            table = None
        else:
            table = tf.constant(sinusoidal_positions(spec.max_positions, d))
        self.sinusoids = table
        self.encoder_layers = [
            EncoderLayer(spec, name=f"encoder_layer_{i}") for i in range(spec.encoder_layers)
        ]
        self.decoder_layers = [
            DecoderLayer(spec, name=f"decoder_layer_{i}") for i in range(spec.decoder_layers)
        ]
        pre = spec.layer_norm == "pre"
        self.encoder_norm = _norm("encoder_final_norm") if pre else None
        self.decoder_norm = _norm("decoder_final_norm") if pre else None
        if spec.tie_output_embeddings:
            self.output_layer = TiedOutput(spec.tgt_vocab_size, name="output")
        else:
            self.output_layer = layers.Dense(spec.tgt_vocab_size, name="output")
        for layer in (
            self.source_embedding,
            self.target_embedding,
            self.source_positions,
            self.target_positions,
        ):
            if layer is not None and not layer.built:
                layer.build((None, None))
        for layer in (*self.encoder_layers, *self.decoder_layers):
            layer.build()
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm is not None:
                norm.build((None, d))
        self.output_layer.build((None, d))
        self.built = True

    # ---------------------------------------------------------------- pieces

    def _embed(self, ids, positions, embedding, learned, dropout: Dropout | None):
        """int32 ids [B, T] at int32 ``positions`` [T] -> [B, T, D] inputs (dropped)."""
        table = self.sinusoids if learned is None else learned.embeddings
        x = embedding(ids) * self.scale
        # the sinusoid table is float32; x is bfloat16 under mixed precision
        x = x + ops.cast(ops.take(table, positions, axis=0)[None], x.dtype)
        return x if dropout is None else dropout(x)

    def _logits(self, y):
        if self.spec.tie_output_embeddings:
            return self.output_layer(y, self.target_embedding.embeddings)
        return self.output_layer(y)

    def _encoder(self, src_ids, src_lengths, dropout: Dropout | None):
        """-> (encoder output [B, S, D], source mask bool [B, S])."""
        steps = ops.shape(src_ids)[1]
        mask = ops.arange(steps)[None, :] < src_lengths[:, None]
        positions = ops.arange(steps)
        x = self._embed(src_ids, positions, self.source_embedding, self.source_positions, dropout)
        for layer in self.encoder_layers:
            x = layer(x, visible=mask[:, None, None, :], dropout=dropout)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, mask

    def _decoder(self, ids, positions, self_mask, past, cross, source_mask, dropout):
        """Decoder stack: -> (logits [B, T, V], top cross weights [B, N, T, S], per layer
        the self-attention (keys, values))."""
        x = self._embed(ids, positions, self.target_embedding, self.target_positions, dropout)
        kept, weights = [], None
        cross_mask = source_mask[:, None, None, :]
        for i, layer in enumerate(self.decoder_layers):
            layer_past = None if past is None else past[i]
            x, weights, cache = layer(
                x,
                self_mask=self_mask,
                past=layer_past,
                cross=cross[i],
                cross_mask=cross_mask,
                dropout=dropout,
            )
            kept.append(cache)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return self._logits(x), weights, kept

    def _dropout(self, dropout_seed) -> Dropout | None:
        spec = self.spec
        if dropout_seed is None or (spec.dropout == 0 and spec.attention_dropout == 0):
            return None
        return Dropout(spec.dropout, dropout_seed)

    # ---------------------------------------------------------------- interface

    def call(self, src_ids, src_lengths, tgt_in, dropout_seed=None):
        """int32 [B, S] ids (S >= 1), [B] lengths and [B, T] decoder inputs -> float32
        [B, T, V] logits; dropout and attention dropout when given ``dropout_seed`` (int64
        [2])."""
        dropout = self._dropout(dropout_seed)
        memory, source_mask = self._encoder(src_ids, src_lengths, dropout)
        cross = [layer.cross_attention.keys_values(memory) for layer in self.decoder_layers]
        steps = ops.shape(tgt_in)[1]
        positions = ops.arange(steps)
        causal = positions[None, :] <= positions[:, None]  # [T, T]: query t sees keys <= t
        logits, _, _ = self._decoder(
            tgt_in, positions, causal[None, None], None, cross, source_mask, dropout
        )
        return logits

    def encode(self, src_ids, src_lengths) -> Cache:
        """int32 [B, S] ids (S >= 1) and [B] lengths -> the initial :class:`Cache`: empty
        self-attention caches, each decoder layer's cross-attention keys and values."""
        memory, source_mask = self._encoder(src_ids, src_lengths, None)
        cross = [layer.cross_attention.keys_values(memory) for layer in self.decoder_layers]
        batch = ops.shape(src_ids)[0]
        spec = self.spec
        empty = ops.zeros((batch, spec.num_heads, 0, spec.head_size), dtype="float32")
        count = len(self.decoder_layers)
        return Cache(
            self_keys=(empty,) * count,
            self_values=(empty,) * count,
            cross_keys=tuple(k for k, _ in cross),
            cross_values=tuple(v for _, v in cross),
            source_mask=source_mask,
        )

    def step(self, prev_ids, cache: Cache):
        """int32 [B] ids at position t (the caches' length) -> (float32 [B, V] logits, a new
        :class:`Cache` one position longer, float32 [B, S] top-layer cross-attention weights
        averaged over heads)."""
        position = ops.shape(cache.self_keys[0])[2]
        past = list(zip(cache.self_keys, cache.self_values, strict=True))
        cross = list(zip(cache.cross_keys, cache.cross_values, strict=True))
        logits, weights, kept = self._decoder(
            prev_ids[:, None],
            ops.reshape(position, (1,)),
            None,
            past,
            cross,
            cache.source_mask,
            None,
        )
        new = cache._replace(
            self_keys=tuple(k for k, _ in kept), self_values=tuple(v for _, v in kept)
        )
        return logits[:, 0], new, ops.mean(weights[:, :, 0, :], axis=1)

    def state_signature(self) -> Cache:
        """The ``tf.TensorSpec`` structure of :class:`Cache` (batch and lengths open)."""
        spec = self.spec
        heads = tf.TensorSpec([None, spec.num_heads, None, spec.head_size], tf.float32)
        count = spec.decoder_layers
        return Cache(
            (heads,) * count,
            (heads,) * count,
            (heads,) * count,
            (heads,) * count,
            tf.TensorSpec([None, None], tf.bool),
        )
