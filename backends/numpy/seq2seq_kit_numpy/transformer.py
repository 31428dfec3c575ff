"""The Transformer encoder-decoder network (Vaswani et al. 2017) in the canonical layout of
:mod:`seq2seq_kit.weights`: forward, hand-written backward, and the decoder state of
incremental decoding. The interface is :mod:`.rnn`'s: the network reads weights from, and
writes gradients into, name -> array dicts (views into the model's flat buffers).

Inside, sequences are batch-major and flattened to rows ``[B*T, D]`` for the position-wise
parts; attention works on ``[B, N, T, d]`` (:mod:`.multihead`). The source is cut to its
longest length (at least 1, so shapes never vanish: with every source empty, one hidden
position gives zero weights and a zero context); the target to its last unmasked position
(the decoder is causal).

Dropout (training only; masks drawn in forward order from one generator): the embedded
input of each side, each sub-layer's output before the residual sum, and, at rate
``attention_dropout``, every attention's weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from seq2seq_kit.backend import attention_at_width
from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.vocab import PAD
from seq2seq_kit.weights import sinusoidal_positions

from . import layers, multihead
from .kv_cache import KeyValueCache
from .multihead import Fused, Mask
from .ops import Dropout, cross_entropy, log_softmax, scatter_add_rows

SELF = ("query", "key", "value")
KEY_VALUE = ("key", "value")
QUERY = ("query",)


class DecoderState(NamedTuple):
    """The decoder state of :meth:`Transformer.encode` and :meth:`Transformer.step`.

    Attributes:
        self_attention: per decoder layer, the self-attention keys and values of the
            positions decoded so far, [B, N, t, d] each (t = ``position``).
        cross_keys, cross_values: per decoder layer, the cross-attention keys and values of
            the encoder output, [B, N, S', d] (S' the longest source length, at least 1).
        source_bias: [B, 1, 1, S'] additive mask of the source positions (0 or hidden).
        source_empty: bool [B], sources of length 0 (zero cross-attention weights).
        position: the next target position, 0 from ``encode``.
        weights: [B, S'] the top decoder layer's cross-attention weights of the step that
            made this state, averaged over heads; None from ``encode``.
        source_width: S, the width of the ``src_ids`` encoded (``attention`` pads to it).
    """

    self_attention: tuple[KeyValueCache, ...]
    cross_keys: tuple[np.ndarray, ...]
    cross_values: tuple[np.ndarray, ...]
    source_bias: np.ndarray
    source_empty: np.ndarray
    position: int
    weights: np.ndarray | None
    source_width: int


class _Sublayer(NamedTuple):
    norm: layers.NormCache
    inner: Any  # the sub-layer function's own cache
    drop_mask: np.ndarray | None


class _AttentionCache(NamedTuple):
    """One attention sub-layer's forward pass, kept for the backward pass."""

    h: np.ndarray  # [B*T, D] the query input
    merged: np.ndarray  # [B*T, D] the context, heads concatenated
    attend: multihead.AttendCache
    fused: Fused  # the query (self-attention: query, key, value) projection
    fused_kv: Fused | None  # cross-attention: the memory's key, value projection


class _Side(NamedTuple):
    """One side's forward pass, kept for the backward pass."""

    ids: np.ndarray  # [B, T]
    embed_mask: np.ndarray | None  # dropout of the embedded input, [B*T, D]
    sublayers: list[_Sublayer]  # in forward order
    final: layers.NormCache | None  # the final norm (pre-norm only)


class Transformer:
    """The Transformer of ``spec`` over the weights ``w`` (read) and gradients ``g``
    (written), name -> array dicts in the canonical layout, computing in ``dtype``."""

    def __init__(
        self,
        spec: TransformerSpec,
        w: dict[str, np.ndarray],
        g: dict[str, np.ndarray],
        dtype: np.dtype,
    ):
        self.spec, self._w, self._g, self.dtype = spec, w, g, np.dtype(dtype)
        self.heads = spec.num_heads
        self.scale = 1.0 / math.sqrt(spec.head_size)
        self.embed_scale = math.sqrt(spec.d_model)
        self.pre_norm = spec.layer_norm == "pre"
        self._sinusoids = None
        if spec.positions == "sinusoidal":
            table = sinusoidal_positions(spec.max_positions, spec.d_model)
            self._sinusoids = table.astype(self.dtype)
        self._tables = {
            "encoder": "encoder.embedding",
            "decoder": "encoder.embedding" if spec.share_embeddings else "decoder.embedding",
        }

    # ------------------------------------------------------------------ public interface

    def log_probs(self, batch: Batch) -> np.ndarray:
        """Teacher-forced log-probabilities, float32 [B, T, V], for every ``tgt_in``
        position (padding included)."""
        memory, _, source = self._encode(batch.src_ids, batch.src_lengths, None)
        ids = batch.tgt_in
        y, _ = self._decoder(ids, memory, source, None)
        logits = y @ self._output_kernel()
        logits += self._w["decoder.output.bias"]
        logp = log_softmax(logits).reshape(*ids.shape, -1)
        return np.ascontiguousarray(logp, dtype=np.float32)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> DecoderState:
        """Encoder over int32 [B, S] ids with int32 [B] lengths -> the initial
        :class:`DecoderState`: each decoder layer's cross-attention keys and values of the
        encoder output, the source mask, empty self-attention caches, position 0."""
        memory, _, source = self._encode(src_ids, src_lengths, None)
        batch_size = src_ids.shape[0]
        keys, values = [], []
        for layer in range(self.spec.decoder_layers):
            prefix = f"decoder.layers.{layer}.cross_attention."
            k, v = multihead.project(
                memory, multihead.fuse(self._w, prefix, KEY_VALUE), batch_size, self.heads
            )
            keys.append(np.ascontiguousarray(k))
            values.append(np.ascontiguousarray(v))
        empty = KeyValueCache.empty(batch_size, self.heads, self.spec.head_size, self.dtype)
        is_empty = np.zeros(batch_size, dtype=bool)
        if source.empty is not None:
            is_empty[source.empty] = True
        return DecoderState(
            (empty,) * self.spec.decoder_layers,
            tuple(keys),
            tuple(values),
            source.bias,
            is_empty,
            0,
            None,
            src_ids.shape[1],
        )

    def step(self, prev_ids: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """One decoder step: int32 [B] previous ids and the state -> (float32 [B, V]
        log-probabilities of the next token, new state). ``state`` is not modified.

        Raises:
            ValueError: the state is already at ``spec.max_positions``.
        """
        spec, w = self.spec, self._w
        position = state.position
        if position >= spec.max_positions:
            raise ValueError(
                f"the decoder is at position {position}: the model has no position beyond "
                f"max_positions - 1 = {spec.max_positions - 1}"
            )
        batch_size = prev_ids.shape[0]
        x = np.take(w[self._tables["decoder"]], prev_ids, axis=0)
        x *= self.embed_scale
        x += self._positions("decoder", position + 1)[position]
        empty = np.flatnonzero(state.source_empty)
        source = Mask(state.source_bias, empty if empty.size else None)
        caches, weights = [], None
        for layer in range(spec.decoder_layers):
            prefix = f"decoder.layers.{layer}."

            def self_attention(h, layer=layer, prefix=prefix):
                q, k, v = multihead.project(
                    h, multihead.fuse(w, prefix + "self_attention.", SELF), batch_size, self.heads
                )
                caches.append(state.self_attention[layer].append(k, v))
                keys, values = caches[-1].keys, caches[-1].values
                context, _ = multihead.attend(q * self.scale, keys, values, None)
                return self._attention_output(context, prefix + "self_attention."), None

            def cross_attention(h, layer=layer, prefix=prefix):
                nonlocal weights
                fused = multihead.fuse(w, prefix + "cross_attention.", QUERY)
                (q,) = multihead.project(h, fused, batch_size, self.heads)
                context, cache = multihead.attend(
                    q * self.scale, state.cross_keys[layer], state.cross_values[layer], source
                )
                weights = cache.weights[:, :, 0].mean(axis=1)
                return self._attention_output(context, prefix + "cross_attention."), None

            def feed_forward(h, prefix=prefix):
                return layers.feed_forward(h, w, prefix + "feed_forward.", spec.activation)[0], None

            for name, fn in (
                ("self_attention", self_attention),
                ("cross_attention", cross_attention),
                ("feed_forward", feed_forward),
            ):
                x, _ = self._sublayer(x, f"{prefix}{name}_norm.", fn, None)
        if self.pre_norm:
            x, _ = self._norm(x, "decoder.final_norm.")
        logits = x @ self._output_kernel()
        logits += w["decoder.output.bias"]
        log_probs = log_softmax(logits).astype(np.float32, copy=False)
        return log_probs, state._replace(
            self_attention=tuple(caches), position=position + 1, weights=weights
        )

    def reorder(self, state: DecoderState, index: np.ndarray) -> DecoderState:
        """Rows ``index`` (int64 [B']) of every array in ``state``, as a new state."""
        return DecoderState(
            tuple(cache.take(index) for cache in state.self_attention),
            tuple(a[index] for a in state.cross_keys),
            tuple(a[index] for a in state.cross_values),
            state.source_bias[index],
            state.source_empty[index],
            state.position,
            None if state.weights is None else state.weights[index],
            state.source_width,
        )

    def attention(self, state: DecoderState) -> np.ndarray | None:
        """Float32 [B, S]: the top decoder layer's cross-attention of the step that returned
        ``state``, averaged over heads (0 past each source's length; all 0 for an empty
        source); None for an ``encode`` state."""
        if state.weights is None:
            return None
        return attention_at_width(state.weights, state.source_width)

    def loss_and_gradients(
        self,
        batch: Batch,
        *,
        backward: bool = True,
        drop: Dropout | None = None,
        smoothing: float = 0.0,
        normalizer: float | None = None,
    ) -> float:
        """The masked, label-smoothed (``smoothing``) cross-entropy summed over the target
        tokens of ``batch`` and divided by ``normalizer`` (default: their count); with
        ``backward``, also writes every gradient into ``g``. ``drop`` draws dropout masks
        (training only; its rate is ``spec.dropout``)."""
        spec, w, g = self.spec, self._w, self._g
        if backward:
            for grad in g.values():
                grad.fill(0.0)
        mask = batch.tgt_mask
        used = np.flatnonzero(mask.any(axis=0))
        steps = int(used[-1]) + 1 if used.size else 0
        total = float(mask.sum(dtype=np.float64)) if normalizer is None else normalizer
        if steps == 0 or total == 0.0:
            return 0.0
        memory, encoder, source = self._encode(batch.src_ids, batch.src_lengths, drop)
        ids = np.ascontiguousarray(batch.tgt_in[:, :steps])
        y, decoder = self._decoder(ids, memory, source, drop)
        weights = mask[:, :steps].ravel().astype(self.dtype) / total
        targets = batch.tgt_out[:, :steps].ravel()
        real = np.flatnonzero(weights)
        padded = real.shape[0] < weights.shape[0]
        y_real = y[real] if padded else y
        if padded:
            weights, targets = weights[real], targets[real]
        kernel = self._output_kernel()
        logits = y_real @ kernel
        logits += w["decoder.output.bias"]
        loss, d_logits = cross_entropy(logits, targets, weights, smoothing, backward)
        if not backward:
            return loss
        g["decoder.output.bias"] += d_logits.sum(axis=0)
        if spec.tie_output_embeddings:
            g[self._tables["decoder"]] += d_logits.T @ y_real
        else:
            g["decoder.output.kernel"] += y_real.T @ d_logits
        d_real = d_logits @ kernel.T
        if padded:
            d_y = np.zeros(y.shape, dtype=self.dtype)
            d_y[real] = d_real
        else:
            d_y = d_real
        d_memory = np.zeros(memory.shape, dtype=self.dtype)
        self._backward("decoder", decoder, d_y, d_memory, memory)
        self._backward("encoder", encoder, d_memory, None, None)
        return loss

    # ------------------------------------------------------------------ forward

    def _output_kernel(self) -> np.ndarray:
        if self.spec.tie_output_embeddings:
            return self._w[self._tables["decoder"]].T
        return self._w["decoder.output.kernel"]

    def _positions(self, side: str, steps: int) -> np.ndarray:
        if self._sinusoids is not None:
            return self._sinusoids[:steps]
        return self._w[f"{side}.positions"][:steps]

    def _embed(self, side: str, ids: np.ndarray, drop: Dropout | None):
        """``embedding[ids] * sqrt(D) + position`` of [B, T] ids -> ([B*T, D], dropout
        mask or None).

        Raises:
            ValueError: ``T`` exceeds ``spec.max_positions``.
        """
        batch_size, steps = ids.shape
        if steps > self.spec.max_positions:
            raise ValueError(
                f"the {side} ids are {steps} positions wide; the model has "
                f"max_positions = {self.spec.max_positions}"
            )
        x = np.take(self._w[self._tables[side]], ids, axis=0)
        x *= self.embed_scale
        x += self._positions(side, steps)
        x = x.reshape(batch_size * steps, -1)
        drop_mask = None
        if drop is not None:
            drop_mask = drop(x.shape)
            x *= drop_mask
        return x, drop_mask

    def _norm(self, x: np.ndarray, prefix: str):
        return layers.norm_forward(x, self._w[prefix + "scale"], self._w[prefix + "bias"])

    def _sublayer(
        self,
        x: np.ndarray,
        norm: str,
        fn: Callable[[np.ndarray], tuple[np.ndarray, Any]],
        drop: Dropout | None,
    ) -> tuple[np.ndarray, _Sublayer]:
        """``x + drop(fn(norm(x)))`` (pre-norm) or ``norm(x + drop(fn(x)))`` (post-norm)."""
        if self.pre_norm:
            h, norm_cache = self._norm(x, norm)
            y, inner = fn(h)
        else:
            y, inner = fn(x)
        drop_mask = None
        if drop is not None:
            drop_mask = drop(y.shape)
            y *= drop_mask
        y += x
        if not self.pre_norm:
            y, norm_cache = self._norm(y, norm)
        return y, _Sublayer(norm_cache, inner, drop_mask)

    def _attention_output(self, context: np.ndarray, prefix: str) -> np.ndarray:
        out = multihead.merge_heads(context) @ self._w[prefix + "output.kernel"]
        out += self._w[prefix + "output.bias"]
        return out

    def _attention(
        self,
        prefix: str,
        batch_size: int,
        mask: Mask,
        drop: Dropout | None,
        memory: np.ndarray | None = None,
    ):
        """The sub-layer function of the attention block ``prefix``: self-attention, or
        cross-attention over ``memory`` [B*S, D]."""
        w = self._w
        fused_kv = None
        if memory is None:
            fused = multihead.fuse(w, prefix, SELF)
        else:
            fused = multihead.fuse(w, prefix, QUERY)
            fused_kv = multihead.fuse(w, prefix, KEY_VALUE)
            k, v = multihead.project(memory, fused_kv, batch_size, self.heads)
            k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)

        def fn(h: np.ndarray):
            if memory is None:
                q, k_, v_ = multihead.project(h, fused, batch_size, self.heads)
                k_, v_ = np.ascontiguousarray(k_), np.ascontiguousarray(v_)
            else:
                (q,) = multihead.project(h, fused, batch_size, self.heads)
                k_, v_ = k, v
            context, cache = multihead.attend(q * self.scale, k_, v_, mask, drop)
            merged = multihead.merge_heads(context)
            out = merged @ w[prefix + "output.kernel"]
            out += w[prefix + "output.bias"]
            return out, _AttentionCache(h, merged, cache, fused, fused_kv)

        return fn

    def _drops(self, drop: Dropout | None) -> tuple[Dropout | None, Dropout | None]:
        """(residual dropout, attention dropout) sharing ``drop``'s generator."""
        if drop is None:
            return None, None
        spec = self.spec
        residual = drop if spec.dropout > 0.0 else None
        attention = None
        if spec.attention_dropout > 0.0:
            attention = Dropout(drop.rng, spec.attention_dropout, self.dtype)
        return residual, attention

    def _encode(self, src_ids: np.ndarray, src_lengths: np.ndarray, drop: Dropout | None):
        """Returns ``(memory [B*S', D], side cache, source mask)``."""
        spec = self.spec
        lengths = src_lengths.astype(np.intp)
        batch_size = src_ids.shape[0]
        width = max(1, int(lengths.max()) if lengths.size else 0)
        if src_ids.shape[1] >= width:
            ids = np.ascontiguousarray(src_ids[:, :width])
        else:  # every source empty and no column: one hidden PAD position
            ids = np.full((batch_size, width), PAD, dtype=src_ids.dtype)
        residual, attention = self._drops(drop)
        source = multihead.source_mask(lengths, width, self.dtype)
        x, embed_mask = self._embed("encoder", ids, residual)
        plan = []
        for layer in range(spec.encoder_layers):
            prefix = f"encoder.layers.{layer}."
            plan.append(
                (
                    prefix + "self_attention_norm.",
                    self._attention(prefix + "self_attention.", batch_size, source, attention),
                )
            )
            plan.append((prefix + "feed_forward_norm.", self._feed_forward(prefix)))
        x, sublayers, final = self._run(x, "encoder", plan, residual)
        return x, _Side(ids, embed_mask, sublayers, final), source

    def _feed_forward(self, prefix: str):
        def fn(h: np.ndarray):
            return layers.feed_forward(h, self._w, prefix + "feed_forward.", self.spec.activation)

        return fn

    def _run(self, x, side, plan, residual):
        """Run the sub-layers of ``plan`` [(norm prefix, sub-layer function)] in order from
        ``x``, then the final norm (pre-norm) -> (output, sub-layer caches, final cache)."""
        sublayers = []
        for norm, fn in plan:
            x, cache = self._sublayer(x, norm, fn, residual)
            sublayers.append(cache)
        final = None
        if self.pre_norm:
            x, final = self._norm(x, f"{side}.final_norm.")
        return x, sublayers, final

    def _decoder(self, ids: np.ndarray, memory: np.ndarray, source: Mask, drop: Dropout | None):
        """Teacher-forced decoder over [B, T] ``ids`` -> (top output [B*T, D], side cache)."""
        spec = self.spec
        batch_size, steps = ids.shape
        residual, attention = self._drops(drop)
        causal = multihead.causal_mask(steps, self.dtype)
        x, embed_mask = self._embed("decoder", ids, residual)
        plan = []
        for layer in range(spec.decoder_layers):
            prefix = f"decoder.layers.{layer}."
            plan.append(
                (
                    prefix + "self_attention_norm.",
                    self._attention(prefix + "self_attention.", batch_size, causal, attention),
                )
            )
            plan.append(
                (
                    prefix + "cross_attention_norm.",
                    self._attention(
                        prefix + "cross_attention.", batch_size, source, attention, memory
                    ),
                )
            )
            plan.append((prefix + "feed_forward_norm.", self._feed_forward(prefix)))
        x, sublayers, final = self._run(x, "decoder", plan, residual)
        return x, _Side(ids, embed_mask, sublayers, final)

    # ------------------------------------------------------------------ backward

    def _backward(
        self,
        side: str,
        cache: _Side,
        d_top: np.ndarray,
        d_memory: np.ndarray | None,
        memory: np.ndarray | None,
    ) -> None:
        """Backpropagate d loss / d (the side's output) [B*T, D] through ``side``, adding
        every weight gradient into ``g`` (and, for the decoder, d loss / d memory into
        ``d_memory``)."""
        spec, w, g = self.spec, self._w, self._g
        batch_size, steps = cache.ids.shape
        d_x = d_top
        if cache.final is not None:
            d_x = self._norm_backward(d_x, cache.final, f"{side}.final_norm.")
        count = spec.encoder_layers if side == "encoder" else spec.decoder_layers
        names = ("self_attention", "feed_forward")
        if side == "decoder":
            names = ("self_attention", "cross_attention", "feed_forward")
        blocks = [(layer, name) for layer in range(count) for name in names]
        for (layer, name), sub in reversed(list(zip(blocks, cache.sublayers, strict=True))):
            prefix = f"{side}.layers.{layer}.{name}"
            if name == "feed_forward":

                def inner_backward(d_y, inner, prefix=prefix):
                    return layers.feed_forward_backward(
                        d_y, inner, w, g, prefix + ".", spec.activation
                    )

            else:

                def inner_backward(d_y, inner, prefix=prefix):
                    return self._attention_backward(
                        d_y, inner, prefix + ".", batch_size, d_memory, memory
                    )

            d_x = self._sublayer_backward(d_x, sub, prefix + "_norm.", inner_backward)
        if cache.embed_mask is not None:
            d_x *= cache.embed_mask
        if spec.stored_positions:
            g[f"{side}.positions"][:steps] += d_x.reshape(batch_size, steps, -1).sum(axis=0)
        table = g[self._tables[side]]
        d_x *= self.embed_scale
        table += scatter_add_rows(cache.ids.ravel(), d_x, table.shape[0])

    def _norm_backward(self, d_out: np.ndarray, cache: layers.NormCache, prefix: str):
        return layers.norm_backward(
            d_out,
            cache,
            self._w[prefix + "scale"],
            self._g[prefix + "scale"],
            self._g[prefix + "bias"],
        )

    def _sublayer_backward(self, d_out: np.ndarray, sub: _Sublayer, norm: str, inner_backward):
        if self.pre_norm:
            d_y = d_out if sub.drop_mask is None else d_out * sub.drop_mask
            d_h = inner_backward(d_y, sub.inner)
            return d_out + self._norm_backward(d_h, sub.norm, norm)
        d_z = self._norm_backward(d_out, sub.norm, norm)
        d_y = d_z if sub.drop_mask is None else d_z * sub.drop_mask
        return d_z + inner_backward(d_y, sub.inner)

    def _attention_backward(
        self,
        d_out: np.ndarray,
        inner: _AttentionCache,
        prefix: str,
        batch_size: int,
        d_memory: np.ndarray | None,
        memory: np.ndarray | None,
    ) -> np.ndarray:
        """d loss / d (query input) of an attention sub-layer from d loss / d output
        [B*T, D]; adds its weight gradients into ``g`` and, for cross-attention, d loss /
        d memory into ``d_memory``."""
        w, g = self._w, self._g
        h, merged, cache, fused, fused_kv = inner
        g[prefix + "output.kernel"] += merged.T @ d_out
        g[prefix + "output.bias"] += d_out.sum(axis=0)
        d_merged = d_out @ w[prefix + "output.kernel"].T
        _, heads, steps, width = cache.q.shape
        d_context = d_merged.reshape(batch_size, steps, heads, width).transpose(0, 2, 1, 3)
        d_q, d_k, d_v = multihead.attend_backward(d_context, cache)
        d_q *= self.scale
        if fused_kv is None:
            return multihead.project_backward([d_q, d_k, d_v], h, fused, g, prefix, SELF)
        d_memory += multihead.project_backward([d_k, d_v], memory, fused_kv, g, prefix, KEY_VALUE)
        return multihead.project_backward([d_q], h, fused, g, prefix, QUERY)
