"""The Transformer's position-wise pieces on flat [N, D] rows: layer normalisation (Ba et
al. 2016) and the feed-forward block (Vaswani et al. 2017, section 3.3), forward and
backward. Backward passes add (``+=``) into the gradient arrays they are given, so that
callers can zero them once and let shared weights collect every contribution."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from seq2seq_kit.weights import LAYER_NORM_EPSILON

from . import activations


class NormCache(NamedTuple):
    """``xhat`` [N, D] the normalised rows and ``rstd`` [N, 1] ``1 / sqrt(var + eps)``."""

    xhat: np.ndarray
    rstd: np.ndarray


def norm_forward(
    x: np.ndarray, scale: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, NormCache]:
    """``(x - mean) / sqrt(var + 1e-5) * scale + bias`` over the last axis of [N, D] ``x``
    (biased variance, as PyTorch's ``nn.LayerNorm``)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    var += LAYER_NORM_EPSILON
    rstd = 1.0 / np.sqrt(var)
    centred *= rstd
    out = centred * scale
    out += bias
    return out, NormCache(centred, rstd)


def norm_backward(
    d_out: np.ndarray,
    cache: NormCache,
    scale: np.ndarray,
    g_scale: np.ndarray,
    g_bias: np.ndarray,
) -> np.ndarray:
    """d loss / d x from d loss / d out [N, D]; adds into ``g_scale`` and ``g_bias``.
    With ``x^ = (x - mean) * rstd``: ``dx = rstd * (dx^ - mean(dx^) - x^ mean(dx^ x^))``."""
    xhat = cache.xhat
    g_scale += np.einsum("nd,nd->d", d_out, xhat)
    g_bias += d_out.sum(axis=0)
    d_xhat = d_out * scale
    d_x = d_xhat - d_xhat.mean(axis=-1, keepdims=True)
    d_x -= xhat * np.mean(d_xhat * xhat, axis=-1, keepdims=True)
    d_x *= cache.rstd
    return d_x


class FeedForwardCache(NamedTuple):
    x: np.ndarray
    inner: np.ndarray
    activation_cache: np.ndarray


def feed_forward(
    x: np.ndarray, w: dict[str, np.ndarray], prefix: str, activation: str
) -> tuple[np.ndarray, FeedForwardCache]:
    """``act(x @ inner.kernel + inner.bias) @ outer.kernel + outer.bias`` on [N, D] rows,
    weights ``prefix + "inner.kernel"`` etc. of ``w``."""
    h = x @ w[prefix + "inner.kernel"]
    h += w[prefix + "inner.bias"]
    inner, act_cache = activations.forward(activation, h)
    out = inner @ w[prefix + "outer.kernel"]
    out += w[prefix + "outer.bias"]
    return out, FeedForwardCache(x, inner, act_cache)


def feed_forward_backward(
    d_out: np.ndarray,
    cache: FeedForwardCache,
    w: dict[str, np.ndarray],
    g: dict[str, np.ndarray],
    prefix: str,
    activation: str,
) -> np.ndarray:
    """d loss / d x from d loss / d out [N, D]; adds the block's weight gradients to ``g``."""
    g[prefix + "outer.kernel"] += cache.inner.T @ d_out
    g[prefix + "outer.bias"] += d_out.sum(axis=0)
    d_inner = d_out @ w[prefix + "outer.kernel"].T
    d_h = activations.backward(activation, d_inner, cache.activation_cache)
    g[prefix + "inner.kernel"] += cache.x.T @ d_h
    g[prefix + "inner.bias"] += d_h.sum(axis=0)
    return d_h @ w[prefix + "inner.kernel"].T
