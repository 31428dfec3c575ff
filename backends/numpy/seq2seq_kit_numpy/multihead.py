"""Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2) in the
canonical layout of :mod:`seq2seq_kit.weights`, batched over ``[B, N, T, d]`` (batch,
heads, positions, head units), forward and backward.

Projections that read the same input are fused: self-attention multiplies its input once
by ``concat(query, key, value).kernel`` [D, 3D], cross-attention the memory once by
``concat(key, value).kernel`` [D, 2D] (:func:`fuse` builds them once per pass).
Backward passes add (``+=``) into the gradients they are given.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Mask(NamedTuple):
    """Which keys each query may see.

    Attributes:
        bias: additive scores, broadcastable to [B, N, T, S]: 0 where visible, a large
            negative number where hidden (so ``exp`` gives exactly 0).
        empty: int indices of the batch rows whose queries see no key at all (sources of
            length 0), whose weights are then set to 0 (a zero context); None if none.
    """

    bias: np.ndarray
    empty: np.ndarray | None


class Fused(NamedTuple):
    """Concatenated projection weights: ``kernel`` [D, P*D], ``bias`` [P*D]."""

    kernel: np.ndarray
    bias: np.ndarray


class AttendCache(NamedTuple):
    q: np.ndarray  # [B, N, T, d], scaled by 1 / sqrt(d)
    k: np.ndarray  # [B, N, S, d]
    v: np.ndarray  # [B, N, S, d]
    weights: np.ndarray  # [B, N, T, S] softmax, before dropout
    dropped: np.ndarray  # weights after attention dropout (the same array without it)
    drop_mask: np.ndarray | None


def hidden_bias(dtype: np.dtype) -> float:
    """The additive score of a hidden key: so negative that ``exp`` underflows to 0, yet
    far enough from the dtype's limit that adding a score cannot overflow."""
    return float(np.finfo(dtype).min) / 4


def source_mask(lengths: np.ndarray, width: int, dtype: np.dtype) -> Mask:
    """Keys at or past each row's length hidden: bias [B, 1, 1, width]."""
    hidden = np.arange(width)[None, :] >= lengths[:, None]
    bias = np.where(hidden, hidden_bias(dtype), 0.0).astype(dtype)[:, None, None, :]
    empty = np.flatnonzero(lengths == 0)
    return Mask(bias, empty if empty.size else None)


def causal_mask(steps: int, dtype: np.dtype) -> Mask:
    """Each query sees the keys up to its own position: bias [1, 1, T, T]."""
    hidden = np.triu(np.ones((steps, steps), dtype=bool), k=1)
    return Mask(np.where(hidden, hidden_bias(dtype), 0.0).astype(dtype)[None, None], None)


def fuse(w: dict[str, np.ndarray], prefix: str, parts: tuple[str, ...]) -> Fused:
    """``concat(prefix + part + ".kernel")`` along columns, and the biases likewise."""
    return Fused(
        np.concatenate([w[f"{prefix}{part}.kernel"] for part in parts], axis=1),
        np.concatenate([w[f"{prefix}{part}.bias"] for part in parts]),
    )


def project(x: np.ndarray, fused: Fused, batch: int, heads: int) -> np.ndarray:
    """[B*T, D] rows -> the P projections split into heads, a [P, B, N, T, d] view."""
    y = x @ fused.kernel
    y += fused.bias
    parts = fused.kernel.shape[1] // fused.kernel.shape[0]
    width = fused.kernel.shape[0] // heads
    return y.reshape(batch, -1, parts, heads, width).transpose(2, 0, 3, 1, 4)


def project_backward(
    d_heads: list[np.ndarray],
    x: np.ndarray,
    fused: Fused,
    g: dict[str, np.ndarray],
    prefix: str,
    parts: tuple[str, ...],
) -> np.ndarray:
    """Backward of :func:`project`: ``d_heads`` one [B, N, T, d] gradient per part; adds the
    kernel and bias gradients of each part into ``g`` (the key bias's is exactly 0, so it
    adds none there); returns d loss / d x [B*T, D]."""
    batch, _, steps, _ = d_heads[0].shape
    width = fused.kernel.shape[0]
    d_y = np.empty(
        (batch, steps, len(parts), width // d_heads[0].shape[-1], d_heads[0].shape[-1]),
        dtype=x.dtype,
    )
    for i, d in enumerate(d_heads):
        d_y[:, :, i] = d.transpose(0, 2, 1, 3)
    d_y = d_y.reshape(batch * steps, len(parts) * width)
    g_kernel = x.T @ d_y
    g_bias = d_y.sum(axis=0)
    for i, part in enumerate(parts):
        columns = slice(i * width, (i + 1) * width)
        g[f"{prefix}{part}.kernel"] += g_kernel[:, columns]
        # The key bias adds q . bias to every score of a query alike, which softmax
        # ignores: its gradient is exactly 0. Summing rounding noise instead would let
        # Adam (which normalises each element's step) move it by up to lr per update.
        if part != "key":
            g[f"{prefix}{part}.bias"] += g_bias[columns]
    return d_y @ fused.kernel.T


def merge_heads(x: np.ndarray) -> np.ndarray:
    """[B, N, T, d] -> [B*T, N*d] rows, heads concatenated (a fresh array)."""
    batch, heads, steps, width = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch * steps, heads * width)


def attend(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: Mask | None,
    drop=None,
) -> tuple[np.ndarray, AttendCache]:
    """``softmax(q @ k.T + mask) @ v`` per batch row and head (``q`` already scaled by
    ``1 / sqrt(d)``): [B, N, T, d], [B, N, S, d] x2 -> context [B, N, T, d]. ``drop``, a
    :class:`~.ops.Dropout`, draws the attention-dropout mask of the weights."""
    scores = q @ k.swapaxes(-1, -2)
    if mask is not None:
        scores += mask.bias
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores, out=scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    if mask is not None and mask.empty is not None:
        weights[mask.empty] = 0.0
    drop_mask, dropped = None, weights
    if drop is not None:
        drop_mask = drop(weights.shape)
        dropped = weights * drop_mask
    return dropped @ v, AttendCache(q, k, v, weights, dropped, drop_mask)


def attend_backward(
    d_context: np.ndarray, cache: AttendCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of (scaled q, k, v) from d loss / d context [B, N, T, d]. The softmax's
    is ``a * (da - sum(da * a))``; hidden keys (a = 0) get none."""
    d_weights = d_context @ cache.v.swapaxes(-1, -2)
    d_v = cache.dropped.swapaxes(-1, -2) @ d_context
    if cache.drop_mask is not None:
        d_weights *= cache.drop_mask
    a = cache.weights
    d_scores = d_weights
    d_scores -= np.sum(d_weights * a, axis=-1, keepdims=True)
    d_scores *= a
    d_q = d_scores @ cache.k
    d_k = d_scores.swapaxes(-1, -2) @ cache.q
    return d_q, d_k, d_v
