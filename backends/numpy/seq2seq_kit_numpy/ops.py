"""Numerics shared by the networks: inverted dropout, log-softmax, the (label-smoothed)
cross-entropy of the output layer and the gradient of a row gather."""

from __future__ import annotations

import numpy as np

#: Vocabularies up to this size scatter gradient rows with a one-hot matmul (BLAS); larger
#: ones de-duplicate ids and use ``np.add.at`` only for repeats. Measured with NumPy 2.4 on
#: 2 cores: the matmul wins below a few hundred rows, ``np.add.at`` above.
ONE_HOT_SCATTER_MAX_ROWS = 128


class Dropout:
    """Inverted dropout masks (Srivastava et al. 2014): each call draws the next [shape]
    mask, 0 with probability ``rate`` and ``1 / (1 - rate)`` otherwise, from one generator.
    The forward pass draws them in a fixed order, so the generator's seed fixes them all."""

    def __init__(self, rng: np.random.Generator, rate: float, dtype: np.dtype):
        self.rng, self.rate, self.dtype = rng, rate, dtype

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        keep = self.rng.random(shape) >= self.rate
        mask = keep.astype(self.dtype)
        mask *= 1.0 / (1.0 - self.rate)
        return mask


def log_softmax(logits: np.ndarray, with_probs: bool = False):
    """Numerically stable ``log softmax`` over the last axis: ``z - m - log(sum(exp(z - m)))``
    with ``m`` the row maximum, so no ``exp`` overflows. With ``with_probs``, returns
    ``(log_probs, probs)``, the softmax reusing the same ``exp`` (for the backward pass)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    shifted -= np.log(total)
    if with_probs:
        exp /= total
        return shifted, exp
    return shifted


def cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    smoothing: float,
    backward: bool,
) -> tuple[float, np.ndarray | None]:
    """Weighted, label-smoothed cross-entropy of ``logits`` [N, V] against int ``targets``
    [N] with per-row ``weights`` [N] (mask / token count): ``sum_n weights[n] * ((1 - eps)
    * -log p_n(y_n) + eps * mean_v(-log p_n(v)))`` (Szegedy et al. 2016, section 7; PyTorch's
    ``CrossEntropyLoss(label_smoothing=eps)``). Returns ``(loss, d loss / d logits)``, the
    gradient ``(softmax - (1 - eps) one_hot(y) - eps / V) * weights`` (None without
    ``backward``)."""
    logp, probs = log_softmax(logits, with_probs=True)
    rows = np.arange(targets.shape[0])
    nll = -logp[rows, targets]
    if smoothing:
        nll *= 1.0 - smoothing
        nll -= smoothing * logp.mean(axis=1)
    loss = float(np.dot(nll, weights))
    if not backward:
        return loss, None
    d_logits = probs
    if smoothing:
        d_logits -= smoothing / logits.shape[1]
    d_logits[rows, targets] -= 1.0 - smoothing
    d_logits *= weights[:, None]
    return loss, d_logits


def scatter_add_rows(ids: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[ids[n]] += values[n]`` for all n, into a fresh zero [num_rows, D] array: the
    gradient of a row gather ``table[ids]``. ``ids`` int [N], ``values`` [N, D]."""
    if num_rows <= ONE_HOT_SCATTER_MAX_ROWS:
        one_hot = np.zeros((num_rows, ids.shape[0]), dtype=values.dtype)
        one_hot[ids, np.arange(ids.shape[0])] = 1.0
        return one_hot @ values
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    unique, first = np.unique(ids, return_index=True)
    out[unique] = values[first]
    if unique.shape[0] < ids.shape[0]:
        repeats = np.ones(ids.shape[0], dtype=bool)
        repeats[first] = False
        np.add.at(out, ids[repeats], values[repeats])
    return out
