"""Global attention (Luong et al. 2015) in NumPy: forward over all decoder positions at once,
its backward pass, and the single-step form for decoding.

The formulas are those of :mod:`seq2seq_kit.weights`. For queries ``h_t`` (the top decoder
layer's outputs) and memory ``m_s`` (the top encoder layer's outputs)::

    "dot":      score(t, s) = h_t . m_s
    "general":  score(t, s) = (h_t @ kernel) . m_s
    "bahdanau": score(t, s) = v . tanh(h_t @ query_kernel + m_s @ memory_kernel)
    a_t = softmax over s < length of score(t, s)      (0 at s >= length)
    c_t = sum_s a_t,s m_s                              (0 for an empty source)
    h~_t = tanh([c_t, h_t] @ output_kernel)

Arrays here are batch-major: queries [B, T, H], memory [B, S, H], scores [B, T, S], so that
every position's scores and contexts are one batched matmul (``np.matmul`` over B).
Decoding calls the same :func:`forward` with ``T = 1``, so a step reproduces the
teacher-forced position.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PREFIX = "decoder.attention."


class Memory(NamedTuple):
    """What the decoder attends to, computed once per source batch (part of the decoder
    state).

    Attributes:
        values: [B, S, H] the memory ``m_s``.
        keys: [B, S, H] ``m_s @ memory_kernel`` for ``"bahdanau"`` (the query-independent
            half of the score, computed once), else None.
        mask: bool [B, 1, S], True at real source positions.
    """

    values: np.ndarray
    keys: np.ndarray | None
    mask: np.ndarray

    def take(self, index: np.ndarray) -> Memory:
        """Rows ``index`` of every array, as a new memory."""
        return Memory(
            self.values[index],
            None if self.keys is None else self.keys[index],
            self.mask[index],
        )


class Cache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`.

    Attributes:
        query: [B, T, H] the queries ``h_t``.
        projected: [B, T, H] ``h_t @ kernel`` ("general"), ``h_t @ query_kernel``
            ("bahdanau"), or None ("dot").
        hidden: [B, T, S, H] ``tanh(h_t @ query_kernel + m_s @ memory_kernel)``
            ("bahdanau" only), else None.
        probs: [B, T, S] the attention weights ``a``.
        context: [B, T, H] the contexts ``c_t``.
        output: [B, T, H] ``h~_t``.
    """

    query: np.ndarray
    projected: np.ndarray | None
    hidden: np.ndarray | None
    probs: np.ndarray
    context: np.ndarray
    output: np.ndarray


def memory(
    kind: str, values: np.ndarray, lengths: np.ndarray, weights: dict[str, np.ndarray]
) -> Memory:
    """The :class:`Memory` of [B, S, H] ``values`` for int [B] source ``lengths``."""
    mask = (np.arange(values.shape[1])[None, :] < lengths[:, None])[:, None, :]
    keys = None
    if kind == "bahdanau":
        batch, steps, hidden = values.shape
        keys = values.reshape(-1, hidden) @ weights[PREFIX + "memory_kernel"]
        keys = keys.reshape(batch, steps, hidden)
    return Memory(values, keys, mask)


def _matmul_last(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x @ kernel`` over the last axis as one 2-D matmul."""
    out = x.reshape(-1, x.shape[-1]) @ kernel
    return out.reshape(*x.shape[:-1], kernel.shape[1])


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax of [B, T, S] ``scores`` over S where ``mask`` ([B, 1, S]) is True, exactly 0
    elsewhere; a row with no True position is all 0. ``scores`` is overwritten."""
    np.copyto(scores, -np.inf, where=~mask)
    top = scores.max(axis=-1, keepdims=True)
    top[np.isneginf(top)] = 0.0  # empty source: every exp(-inf - 0) is 0
    scores -= top
    np.exp(scores, out=scores)
    total = scores.sum(axis=-1, keepdims=True)
    total[total == 0.0] = 1.0
    scores /= total
    return scores


def forward(
    kind: str, query: np.ndarray, mem: Memory, weights: dict[str, np.ndarray]
) -> tuple[np.ndarray, Cache]:
    """Attention for [B, T, H] ``query`` over ``mem``: returns ``h~`` [B, T, H] and the
    :class:`Cache` (whose ``probs`` are the weights)."""
    values = mem.values
    values_t = values.transpose(0, 2, 1)
    projected = hidden = None
    if kind == "dot":
        scores = np.matmul(query, values_t)
    elif kind == "general":
        projected = _matmul_last(query, weights[PREFIX + "kernel"])
        scores = np.matmul(projected, values_t)
    elif kind == "bahdanau":
        projected = _matmul_last(query, weights[PREFIX + "query_kernel"])
        hidden = projected[:, :, None, :] + mem.keys[:, None, :, :]
        np.tanh(hidden, out=hidden)
        size = hidden.shape[-1]
        scores = (hidden.reshape(-1, size) @ weights[PREFIX + "v"]).reshape(hidden.shape[:-1])
    else:
        raise ValueError(f"unknown attention {kind!r}")
    probs = masked_softmax(scores, mem.mask)
    context = np.matmul(probs, values)
    out_kernel = weights[PREFIX + "output_kernel"]
    size = query.shape[-1]
    output = _matmul_last(context, out_kernel[:size])
    output += _matmul_last(query, out_kernel[size:])
    np.tanh(output, out=output)
    return output, Cache(query, projected, hidden, probs, context, output)


def backward(
    kind: str,
    cache: Cache,
    d_output: np.ndarray,
    weights: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    mem: Memory,
) -> tuple[np.ndarray, np.ndarray]:
    """Backward pass of :func:`forward` given d loss / d h~ [B, T, H]. Writes the gradients
    of the ``decoder.attention.*`` weights into ``grads``; returns ``(d_query [B, T, H],
    d_values [B, S, H])``."""
    query, projected, hidden, probs, context, output = cache
    values = mem.values
    size = query.shape[-1]
    flat = (-1, size)
    # h~ = tanh(c @ K[:H] + h @ K[H:])
    d_pre = output * output
    np.subtract(1.0, d_pre, out=d_pre)
    d_pre *= d_output
    d_pre_flat = d_pre.reshape(flat)
    out_kernel = weights[PREFIX + "output_kernel"]
    d_out_kernel = grads[PREFIX + "output_kernel"]
    np.matmul(context.reshape(flat).T, d_pre_flat, out=d_out_kernel[:size])
    np.matmul(query.reshape(flat).T, d_pre_flat, out=d_out_kernel[size:])
    d_context = (d_pre_flat @ out_kernel[:size].T).reshape(query.shape)
    d_query = (d_pre_flat @ out_kernel[size:].T).reshape(query.shape)
    # c = a @ m
    d_probs = np.matmul(d_context, values.transpose(0, 2, 1))
    d_values = np.matmul(probs.transpose(0, 2, 1), d_context)
    # softmax: d s = a * (d a - sum(a * d a)); exactly 0 at masked positions (a = 0)
    d_scores = d_probs
    d_scores -= (d_probs * probs).sum(axis=-1, keepdims=True)
    d_scores *= probs
    d_scores_t = d_scores.transpose(0, 2, 1)
    if kind == "dot":
        d_query += np.matmul(d_scores, values)
        d_values += np.matmul(d_scores_t, query)
    elif kind == "general":
        kernel = weights[PREFIX + "kernel"]
        d_projected = np.matmul(d_scores, values)
        d_values += np.matmul(d_scores_t, projected)
        np.matmul(query.reshape(flat).T, d_projected.reshape(flat), out=grads[PREFIX + "kernel"])
        d_query += _matmul_last(d_projected, kernel.T)
    else:  # bahdanau
        v = weights[PREFIX + "v"]
        np.matmul(d_scores.reshape(-1), hidden.reshape(flat), out=grads[PREFIX + "v"])
        d_hidden = hidden * hidden
        np.subtract(1.0, d_hidden, out=d_hidden)
        d_hidden *= v
        d_hidden *= d_scores[..., None]
        d_projected = d_hidden.sum(axis=2)
        d_keys = d_hidden.sum(axis=1)
        np.matmul(
            query.reshape(flat).T,
            d_projected.reshape(flat),
            out=grads[PREFIX + "query_kernel"],
        )
        np.matmul(values.reshape(flat).T, d_keys.reshape(flat), out=grads[PREFIX + "memory_kernel"])
        d_query += _matmul_last(d_projected, weights[PREFIX + "query_kernel"].T)
        d_values += _matmul_last(d_keys, weights[PREFIX + "memory_kernel"].T)
    return d_query, d_values


def step(
    kind: str, query: np.ndarray, mem: Memory, weights: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One decoding step: [B, H] query -> (``h~`` [B, H], weights [B, S]); :func:`forward`
    at ``T = 1``."""
    output, cache = forward(kind, query[:, None, :], mem, weights)
    return output[:, 0], cache.probs[:, 0]
