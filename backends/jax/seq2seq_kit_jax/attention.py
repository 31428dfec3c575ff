"""Global attention (Luong et al. 2015) as pure JAX functions, batch-major.

The formulas are those of :mod:`seq2seq_kit.weights`. For queries ``h_t`` (the top decoder
layer's outputs) and memory ``m_s`` (the top encoder layer's outputs)::

    "dot":      score(t, s) = h_t . m_s
    "general":  score(t, s) = (h_t @ kernel) . m_s
    "bahdanau": score(t, s) = v . tanh(h_t @ query_kernel + m_s @ memory_kernel)
    a_t = softmax over s < length of score(t, s)      (0 at s >= length)
    c_t = sum_s a_t,s m_s                              (0 for an empty source)
    h~_t = tanh([c_t, h_t] @ output_kernel)

Queries are [B, T, H], memory [B, S, H], scores [B, T, S]. Decoding calls :func:`attend`
with ``T = 1``, so a step reproduces the teacher-forced position.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

PREFIX = "decoder.attention."


class Memory(NamedTuple):
    """What the decoder attends to, computed once per source batch (part of the state).

    Attributes:
        values: [B, S, H] the memory ``m_s``.
        keys: [B, S, H] ``m_s @ memory_kernel`` for ``"bahdanau"`` (the query-independent
            half of the score), else None.
        mask: bool [B, S], True at real source positions.
    """

    values: jax.Array
    keys: jax.Array | None
    mask: jax.Array


def memory(kind: str, values: jax.Array, lengths: jax.Array, params: dict) -> Memory:
    """The :class:`Memory` of [B, S, H] ``values`` for int [B] source ``lengths``."""
    mask = jnp.arange(values.shape[1])[None, :] < lengths[:, None]
    keys = values @ params[PREFIX + "memory_kernel"] if kind == "bahdanau" else None
    return Memory(values, keys, mask)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax of ``scores`` over the last axis where ``mask`` (broadcastable) is True,
    exactly 0 elsewhere; a row with no True position is all 0. Masked entries never reach
    ``exp`` with their own value, so no inf or NaN enters the gradient."""
    top = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True)
    top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))  # shift-invariant
    exp = jnp.where(mask, jnp.exp(jnp.where(mask, scores - top, 0.0)), 0.0)
    total = jnp.sum(exp, axis=-1, keepdims=True)
    return exp / jnp.where(total == 0.0, 1.0, total)


def attend(kind: str, query: jax.Array, mem: Memory, params: dict) -> tuple[jax.Array, jax.Array]:
    """Attention for [B, T, H] ``query`` over ``mem``: ``(h~ [B, T, H], a [B, T, S])``."""
    values = mem.values
    if kind == "dot":
        scores = jnp.einsum("bth,bsh->bts", query, values)
    elif kind == "general":
        scores = jnp.einsum("bth,bsh->bts", query @ params[PREFIX + "kernel"], values)
    elif kind == "bahdanau":
        projected = query @ params[PREFIX + "query_kernel"]
        hidden = jnp.tanh(projected[:, :, None, :] + mem.keys[:, None, :, :])
        scores = hidden @ params[PREFIX + "v"]
    else:
        raise ValueError(f"unknown attention {kind!r}")
    probs = masked_softmax(scores, mem.mask[:, None, :])
    context = jnp.einsum("bts,bsh->bth", probs, values)
    kernel = params[PREFIX + "output_kernel"]
    size = query.shape[-1]
    output = jnp.tanh(context @ kernel[:size] + query @ kernel[size:])
    return output, probs
