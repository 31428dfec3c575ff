"""The Transformer encoder-decoder (``TransformerSpec``; Vaswani et al. 2017) as pure JAX
functions of ``(spec, params, arrays)``, batch-major.

The layout and formulas are those of :mod:`seq2seq_kit.weights`: row-vector kernels, head
``n`` on feature columns ``[n*d, (n+1)*d)``, layer norms with epsilon 1e-5, pre- or
post-norm sub-layers, inputs ``embedding[id] * sqrt(D) + position[t]``. Inside, the heads
are split out to ``[B, N, T, d]``.

Shapes reaching these functions are padded (see :mod:`.padding`): rows of source length 0
and target mask 0, trailing positions. Padding changes no real result: source positions at
or past a row's length are masked as keys, the decoder is causal (a real position never
sees a later one), and the loss weights by the mask.

Incremental decoding (:func:`step`) keeps, per decoder layer, the self-attention keys and
values of the positions so far in a cache of fixed capacity ``C`` (positions at or past
the current one are masked), and the cross-attention keys and values computed once by
:func:`cross_keys`; a step at position ``t`` computes exactly the teacher-forced row ``t``.

Dropout sites (training only, :class:`.dropout.Dropout`): the embedded input of each side,
each sub-layer's output before the residual sum, and (at ``attention_dropout``) the
attention weights; each has its own site number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.weights import LAYER_NORM_EPSILON, sinusoidal_positions

from .attention import masked_softmax
from .dropout import Dropout
from .loss import Arrays

Params = dict[str, jax.Array]
#: One attention's keys and values, heads split out: ([B, N, S, d], [B, N, S, d]).
KeyValues = tuple[jax.Array, jax.Array]
#: ``self_keys(layer, new)`` in :func:`decode`: the keys and values queries attend to.
SelfKeys = Callable[[int, KeyValues], KeyValues]

#: Dropout sites: side ``DECODER_SITE * side + LAYER_SITES * (l + 1) + k`` for sub-layer
#: ``k`` of layer ``l`` (0 self-attention, 1 cross-attention, 2 feed-forward; +3 the
#: weights of attention ``k``); ``DECODER_SITE * side`` is the side's embedded input.
DECODER_SITE = 1000
LAYER_SITES = 10
SELF, CROSS, FEED_FORWARD, WEIGHTS = 0, 1, 2, 3


class Dropouts(NamedTuple):
    """Dropout for a training forward pass: ``units`` on the embedded inputs and sub-layer
    outputs, ``weights`` on attention weights; either None when its rate is 0 in the spec."""

    units: Dropout | None
    weights: Dropout | None


NO_DROPOUT = Dropouts(None, None)


def _site(side: str, layer: int, kind: int) -> int:
    return DECODER_SITE * (side == "decoder") + LAYER_SITES * (layer + 1) + kind


def layer_norm(params: Params, prefix: str, x: jax.Array) -> jax.Array:
    """``(x - mean) / sqrt(var + 1e-5) * scale + bias`` over the last axis, biased variance
    (Ba et al. 2016; PyTorch's ``nn.LayerNorm``)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return (
        centred * lax.rsqrt(var + LAYER_NORM_EPSILON) * params[f"{prefix}.scale"]
        + params[f"{prefix}.bias"]
    )


def _dense(params: Params, prefix: str, x: jax.Array) -> jax.Array:
    return x @ params[f"{prefix}.kernel"] + params[f"{prefix}.bias"]


def _split_heads(spec: TransformerSpec, x: jax.Array) -> jax.Array:
    """[B, T, D] -> [B, N, T, d]: head ``n`` takes feature columns ``[n*d, (n+1)*d)``."""
    batch, steps, _ = x.shape
    return x.reshape(batch, steps, spec.num_heads, spec.head_size).transpose(0, 2, 1, 3)


def _merge_heads(x: jax.Array) -> jax.Array:
    """[B, N, T, d] -> [B, T, N*d], the heads concatenated in order."""
    batch, heads, steps, size = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, steps, heads * size)


def key_values(spec: TransformerSpec, params: Params, prefix: str, m: jax.Array) -> KeyValues:
    """Keys and values of attention ``prefix`` over [B, S, D] input ``m``, [B, N, S, d] each.

    The keys leave out ``key.bias``: it adds ``q . bias`` to all the scores of a query
    alike, which the softmax cancels, so the output is the same and its gradient is exactly
    zero instead of rounding noise (which Adam, dividing by its own magnitude, would turn
    into steps of the learning rate's size)."""
    keys = m @ params[f"{prefix}.key.kernel"]
    return _split_heads(spec, keys), _split_heads(spec, _dense(params, f"{prefix}.value", m))


def attend(
    spec: TransformerSpec,
    params: Params,
    prefix: str,
    x: jax.Array,
    keys: KeyValues,
    mask: jax.Array,
    drop: Dropout | None = None,
    site: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1) of [B, T, D]
    queries ``x`` over ``keys`` (from :func:`key_values`), where bool ``mask``
    (broadcastable to [B, N, T, S]) marks the keys each query may see. Returns the block's
    output [B, T, D] and the attention weights [B, N, T, S] (before dropout). A query that
    sees no key gets zero weights, so a zero context (:func:`.attention.masked_softmax`
    never exponentiates a masked score: no NaN in values or gradients)."""
    k, v = keys
    q = _split_heads(spec, _dense(params, f"{prefix}.query", x))
    scores = jnp.einsum("bntd,bnsd->bnts", q, k) / math.sqrt(spec.head_size)
    weights = masked_softmax(scores, mask)
    used = weights
    if drop is not None:  # keyed by (row, query, key), drawn over heads: padding-free
        used = drop(site, weights.transpose(0, 2, 3, 1), leading=3).transpose(0, 3, 1, 2)
    context = _merge_heads(jnp.einsum("bnts,bnsd->bntd", used, v))
    return _dense(params, f"{prefix}.output", context), weights


def feed_forward(spec: TransformerSpec, params: Params, prefix: str, x: jax.Array) -> jax.Array:
    """``act(x @ inner.kernel + inner.bias) @ outer.kernel + outer.bias``; ReLU, the exact
    (erf) GELU of Hendrycks & Gimpel 2016, or swish ``h * sigmoid(h)`` (Ramachandran et al.
    2017; ``jax.nn.silu``)."""
    inner = _dense(params, f"{prefix}.inner", x)
    if spec.activation == "relu":
        inner = jax.nn.relu(inner)
    elif spec.activation == "swish":
        inner = jax.nn.silu(inner)
    else:
        inner = jax.nn.gelu(inner, approximate=False)
    return _dense(params, f"{prefix}.outer", inner)


def _sublayer(spec, params, norm, x, run, drop: Dropout | None, site: int):
    """One residual sub-layer: ``x + drop(run(norm(x)))`` (pre-norm) or
    ``norm(x + drop(run(x)))`` (post-norm). ``run`` returns ``(output, extra)``; so does
    this, with the extra passed through."""
    pre = spec.layer_norm == "pre"
    out, extra = run(layer_norm(params, norm, x) if pre else x)
    if drop is not None:
        out = drop(site, out)
    return (x + out if pre else layer_norm(params, norm, x + out)), extra


def _position_table(spec: TransformerSpec, params: Params, side: str) -> jax.Array:
    if spec.stored_positions:
        return params[f"{side}.positions"]
    # a constant of the compiled function, computed once per trace
    return jnp.asarray(sinusoidal_positions(spec.max_positions, spec.d_model))


def embedding_table(spec: TransformerSpec, params: Params, side: str) -> jax.Array:
    """The [V, D] embedding ``side`` looks its ids up in (the encoder's when shared)."""
    if side == "encoder" or spec.share_embeddings:
        return params["encoder.embedding"]
    return params["decoder.embedding"]


def embed(
    spec: TransformerSpec, params: Params, side: str, ids: jax.Array, positions: jax.Array
) -> jax.Array:
    """``embedding[ids] * sqrt(D) + position[positions]`` (section 3.4) for int [B, T]
    ``ids`` at int [T] ``positions``: [B, T, D]. Positions past ``max_positions - 1`` occur
    only in bucket padding (the core checks real widths) and read the table's last row."""
    table = _position_table(spec, params, side)
    positions = jnp.minimum(positions, spec.max_positions - 1)
    scale = math.sqrt(spec.d_model)
    return embedding_table(spec, params, side)[ids] * scale + table[positions][None]


def encode(
    spec: TransformerSpec,
    params: Params,
    src_ids: jax.Array,
    src_lengths: jax.Array,
    drops: Dropouts = NO_DROPOUT,
) -> tuple[jax.Array, jax.Array]:
    """Encoder over int [B, S] ids with int [B] lengths -> ``(output [B, S, D], bool source
    mask [B, S])``. Keys at or past a row's length are masked; a row of length 0 has
    all-zero attention (its output rows are never attended to)."""
    steps = src_ids.shape[1]
    mask = jnp.arange(steps)[None, :] < src_lengths[:, None]
    x = embed(spec, params, "encoder", src_ids, jnp.arange(steps))
    if drops.units is not None:
        x = drops.units(_site("encoder", -1, 0), x)
    key_mask = mask[:, None, None, :]
    for layer in range(spec.encoder_layers):
        prefix = f"encoder.layers.{layer}"

        def self_attention(h, prefix=prefix, layer=layer):
            keys = key_values(spec, params, f"{prefix}.self_attention", h)
            site = _site("encoder", layer, SELF + WEIGHTS)
            return attend(
                spec, params, f"{prefix}.self_attention", h, keys, key_mask, drops.weights, site
            )

        def ff(h, prefix=prefix):
            return feed_forward(spec, params, f"{prefix}.feed_forward", h), None

        site = _site("encoder", layer, SELF)
        x, _ = _sublayer(
            spec, params, f"{prefix}.self_attention_norm", x, self_attention, drops.units, site
        )
        site = _site("encoder", layer, FEED_FORWARD)
        x, _ = _sublayer(spec, params, f"{prefix}.feed_forward_norm", x, ff, drops.units, site)
    if spec.layer_norm == "pre":
        x = layer_norm(params, "encoder.final_norm", x)
    return x, mask


def cross_keys(spec: TransformerSpec, params: Params, memory: jax.Array) -> tuple[KeyValues, ...]:
    """Every decoder layer's cross-attention keys and values over the [B, S, D] encoder
    output, bottom layer first (computed once per source batch when decoding)."""
    return tuple(
        key_values(spec, params, f"decoder.layers.{layer}.cross_attention", memory)
        for layer in range(spec.decoder_layers)
    )


def decode(
    spec: TransformerSpec,
    params: Params,
    x: jax.Array,
    self_keys: SelfKeys,
    self_mask: jax.Array,
    cross: tuple[KeyValues, ...],
    src_mask: jax.Array,
    drops: Dropouts = NO_DROPOUT,
) -> tuple[jax.Array, tuple[KeyValues, ...], jax.Array]:
    """The decoder stack over embedded inputs [B, T, D] ``x``.

    ``self_keys(layer, keys)`` turns the [B, N, T, d] keys and values of the ``T`` new
    positions into those the queries attend to (teacher forcing: themselves; incremental:
    the cache with them written in), and ``self_mask`` (broadcastable to [B, N, T, K])
    marks which of those each query may see. Returns the log-probabilities [B, T, V], each
    layer's self-attention keys and values as ``self_keys`` returned them, and the top
    layer's cross-attention weights averaged over heads [B, T, S]."""
    cross_mask = src_mask[:, None, None, :]
    caches = []
    top = None
    for layer in range(spec.decoder_layers):
        prefix = f"decoder.layers.{layer}"

        def self_attention(h, prefix=prefix, layer=layer):
            keys = self_keys(layer, key_values(spec, params, f"{prefix}.self_attention", h))
            site = _site("decoder", layer, SELF + WEIGHTS)
            out, _ = attend(
                spec, params, f"{prefix}.self_attention", h, keys, self_mask, drops.weights, site
            )
            return out, keys

        def cross_attention(h, prefix=prefix, layer=layer):
            site = _site("decoder", layer, CROSS + WEIGHTS)
            return attend(
                spec,
                params,
                f"{prefix}.cross_attention",
                h,
                cross[layer],
                cross_mask,
                drops.weights,
                site,
            )

        def ff(h, prefix=prefix):
            return feed_forward(spec, params, f"{prefix}.feed_forward", h), None

        x, keys = _sublayer(
            spec,
            params,
            f"{prefix}.self_attention_norm",
            x,
            self_attention,
            drops.units,
            _site("decoder", layer, SELF),
        )
        caches.append(keys)
        x, weights = _sublayer(
            spec,
            params,
            f"{prefix}.cross_attention_norm",
            x,
            cross_attention,
            drops.units,
            _site("decoder", layer, CROSS),
        )
        top = jnp.mean(weights, axis=1)
        x, _ = _sublayer(
            spec,
            params,
            f"{prefix}.feed_forward_norm",
            x,
            ff,
            drops.units,
            _site("decoder", layer, FEED_FORWARD),
        )
    if spec.layer_norm == "pre":
        x = layer_norm(params, "decoder.final_norm", x)
    if spec.tie_output_embeddings:
        logits = x @ embedding_table(spec, params, "decoder").T
    else:
        logits = x @ params["decoder.output.kernel"]
    logits = logits + params["decoder.output.bias"]
    return jax.nn.log_softmax(logits, axis=-1), tuple(caches), top


def teacher_forced(
    spec: TransformerSpec, params: Params, batch: Arrays, drops: Dropouts = NO_DROPOUT
) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced ``(log-probabilities [B, T, V], top cross-attention weights averaged
    over heads [B, T, S])`` of a batch: causal decoder self-attention, cross-attention over
    the real source positions."""
    memory, src_mask = encode(spec, params, batch.src_ids, batch.src_lengths, drops)
    steps = batch.tgt_in.shape[1]
    x = embed(spec, params, "decoder", batch.tgt_in, jnp.arange(steps))
    if drops.units is not None:
        x = drops.units(_site("decoder", -1, 0), x)
    causal = jnp.tril(jnp.ones((steps, steps), dtype=bool))[None, None]
    logp, _, top = decode(
        spec,
        params,
        x,
        lambda layer, keys: keys,
        causal,
        cross_keys(spec, params, memory),
        src_mask,
        drops,
    )
    return logp, top


def forward(
    spec: TransformerSpec, params: Params, batch: Arrays, drops: Dropouts = NO_DROPOUT
) -> jax.Array:
    """Teacher-forced log-probabilities [B, T, V] of a batch."""
    return teacher_forced(spec, params, batch, drops)[0]


def empty_cache(spec: TransformerSpec, rows: int, capacity: int) -> tuple[KeyValues, ...]:
    """Zero self-attention caches for ``rows`` rows and ``capacity`` positions, per decoder
    layer: ([rows, N, capacity, d], same)."""
    shape = (rows, spec.num_heads, capacity, spec.head_size)
    zero = jnp.zeros(shape, jnp.float32)
    return tuple((zero, zero) for _ in range(spec.decoder_layers))


def grow_cache(cache: tuple[KeyValues, ...], capacity: int) -> tuple[KeyValues, ...]:
    """``cache`` with its position axis zero-padded to ``capacity`` (a new array: states
    holding the old one are unaffected)."""
    pad = capacity - cache[0][0].shape[2]
    widths = ((0, 0), (0, 0), (0, pad), (0, 0))
    return tuple((jnp.pad(k, widths), jnp.pad(v, widths)) for k, v in cache)


def step(
    spec: TransformerSpec,
    params: Params,
    prev_ids: jax.Array,
    position: jax.Array,
    cache: tuple[KeyValues, ...],
    cross: tuple[KeyValues, ...],
    src_mask: jax.Array,
) -> tuple[jax.Array, tuple[KeyValues, ...], jax.Array]:
    """One decoder step at target position ``position`` (int32 scalar, traced: every
    position reuses one compilation) from int [B] ``prev_ids``: returns the
    log-probabilities [B, V], the caches with this position's keys and values written in
    (new arrays; capacity must exceed ``position``) and the top layer's cross-attention
    weights averaged over heads [B, S]."""
    x = embed(spec, params, "decoder", prev_ids[:, None], position[None])
    capacity = cache[0][0].shape[2]
    visible = (jnp.arange(capacity) <= position)[None, None, None, :]

    def write(layer, keys):
        k, v = cache[layer]
        at = (0, 0, position, 0)
        return lax.dynamic_update_slice(k, keys[0], at), lax.dynamic_update_slice(v, keys[1], at)

    logp, new_cache, top = decode(spec, params, x, write, visible, cross, src_mask)
    return logp[:, 0], new_cache, top[:, 0]
