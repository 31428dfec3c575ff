"""GRU layer numerics in NumPy: sequence forward, backpropagation through time, one step.

The cell is the one of :mod:`seq2seq_kit.weights` (gates ``z, r, n`` along the last axis,
row vectors times kernels, the reset gate applied after the recurrent matmul)::

    x = x_t @ kernel + bias[0];  u = h_{t-1} @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + u_z);  r = sigmoid(x_r + u_r);  n = tanh(x_n + r * u_n)
    h_t = z * h_{t-1} + (1 - z) * n

Same interface as :mod:`.lstm` (time-major arrays, the caller projects the inputs ``x`` of
all steps at once); the state is ``(h,)``. Unlike the LSTM's, the gradients of ``x`` and
``u`` differ (``d u_n = r * d x_n``), so :func:`backward` returns both.

The sigmoid gates use ``sigmoid(a) = 0.5 * tanh(0.5 * a) + 0.5`` with the 0.5 folded into
the ``z, r`` columns of the input projections, the recurrent kernel and the recurrent bias
(exact in binary floating point); the ``n`` columns, and so ``u_n``, stay unscaled.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

#: Arrays in the recurrent state: ``(h,)``.
NUM_STATES = 1


def split_bias(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input bias, recurrent bias)``: rows 0 and 1 of the [2, 3H] bias."""
    return bias[0], bias[1]


def bias_gradient(out: np.ndarray, d_x: np.ndarray, d_u: np.ndarray) -> None:
    """Write the [2, 3H] bias gradient into ``out`` from the flat [N, 3H] gradients of the
    input projection ``x`` (row 0) and of the recurrent projection ``u`` (row 1)."""
    np.sum(d_x, axis=0, out=out[0])
    np.sum(d_u, axis=0, out=out[1])


class Cache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward` (``T`` steps, ``B`` rows, ``H`` units).

    Attributes:
        gates: [T, B, 3H] activations ``z, r, n``.
        recurrent: [T, B, 3H] ``u`` with its ``z, r`` columns scaled by 0.5; only the
            unscaled ``u_n`` columns are read back.
        hiddens: [T+1, B, H] hidden states; ``hiddens[0]`` is ``h0``.
        recurrent_kernel: [H, 3H] the (unscaled) recurrent kernel used.
    """

    gates: np.ndarray
    recurrent: np.ndarray
    hiddens: np.ndarray
    recurrent_kernel: np.ndarray

    @property
    def states(self) -> tuple[np.ndarray]:
        """The state histories ``(hiddens,)``, [T+1, B, H]."""
        return (self.hiddens,)


@lru_cache(maxsize=64)
def gate_scale(hidden: int, dtype: np.dtype) -> np.ndarray:
    """Read-only [3H] of ``dtype``: 0.5 on the ``z, r`` columns, 1 on ``n``."""
    scale = np.full(3 * hidden, 0.5, dtype=dtype)
    scale[2 * hidden :] = 1.0
    scale.flags.writeable = False
    return scale


def forward(
    projected: np.ndarray,
    recurrent_kernel: np.ndarray,
    recurrent_bias: np.ndarray,
    state: tuple[np.ndarray],
) -> Cache:
    """Run the GRU over a whole sequence.

    Args:
        projected: [T, B, 3H] ``x_t @ kernel + bias[0]`` for every step; this buffer is
            reused for the gate activations (it is overwritten and becomes ``Cache.gates``).
        recurrent_kernel: [H, 3H].
        recurrent_bias: [3H] ``bias[1]``.
        state: ``(h0,)``, [B, H], the initial state (not modified).

    Returns:
        The :class:`Cache`; the outputs ``h_1 .. h_T`` are ``cache.hiddens[1:]``.
    """
    (h0,) = state
    steps, batch, width = projected.shape
    hidden = width // 3
    dtype = projected.dtype
    scale = gate_scale(hidden, dtype)
    projected *= scale
    scaled_kernel = recurrent_kernel * scale
    scaled_bias = recurrent_bias * scale
    gates = projected
    recurrent = np.empty_like(projected)
    hiddens = np.empty((steps + 1, batch, hidden), dtype=dtype)
    hiddens[0] = h0
    reset_u = np.empty((batch, hidden), dtype=dtype)
    zr, n_ = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
    z_, r_ = slice(0, hidden), slice(hidden, 2 * hidden)
    for t in range(steps):
        a = gates[t]
        u = recurrent[t]
        np.matmul(hiddens[t], scaled_kernel, out=u)
        u += scaled_bias
        g = a[:, zr]
        g += u[:, zr]
        np.tanh(g, out=g)
        g *= 0.5
        g += 0.5
        n = a[:, n_]
        np.multiply(a[:, r_], u[:, n_], out=reset_u)
        n += reset_u
        np.tanh(n, out=n)
        h = hiddens[t + 1]
        np.subtract(hiddens[t], n, out=h)
        h *= a[:, z_]
        h += n
    return Cache(gates, recurrent, hiddens, recurrent_kernel)


def step(
    projected: np.ndarray,
    state: tuple[np.ndarray],
    recurrent_kernel: np.ndarray,
    recurrent_bias: np.ndarray,
) -> tuple[np.ndarray]:
    """One GRU step for decoding: [B, 3H] ``x_t @ kernel + bias[0]`` and the state ``(h,)``
    -> the new ``(h,)``. Nothing passed in is modified.

    Same operations, in the same order, as one iteration of :func:`forward`, so decoding step
    by step reproduces the teacher-forced outputs.
    """
    (h,) = state
    hidden = h.shape[-1]
    scale = gate_scale(hidden, projected.dtype)
    a = projected * scale
    u = h @ (recurrent_kernel * scale)
    u += recurrent_bias * scale
    g = a[:, : 2 * hidden]
    g += u[:, : 2 * hidden]
    np.tanh(g, out=g)
    g *= 0.5
    g += 0.5
    n = a[:, 2 * hidden :]
    n += a[:, hidden : 2 * hidden] * u[:, 2 * hidden :]
    np.tanh(n, out=n)
    h_new = h - n
    h_new *= a[:, :hidden]
    h_new += n
    return (h_new,)


def backward(
    cache: Cache, dh_out: np.ndarray, d_carry: tuple[np.ndarray | None, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray]]:
    """Backpropagation through time (Werbos 1990) for :func:`forward`.

    Args:
        cache: what :func:`forward` returned.
        dh_out: [T, B, H] d loss / d h_t arriving from outside the recurrence.
        d_carry: unused (the GRU's state is ``h`` alone); the LSTM's slot for d c_t.

    Returns:
        ``(d_x, d_u, (dh0,))``: [T, B, 3H] d loss / d x_t (the input projections, for the
        kernel, ``bias[0]`` and input gradients), [T, B, 3H] d loss / d u_t (the recurrent
        projections, for the recurrent kernel and ``bias[1]``), [B, H] d loss / d h0.
    """
    gates, recurrent, hiddens, recurrent_kernel = cache
    steps, batch, width = gates.shape
    hidden = width // 3
    dtype = gates.dtype
    z, r, n = gates[..., :hidden], gates[..., hidden : 2 * hidden], gates[..., 2 * hidden :]
    # Per-step factors for all steps at once:
    #   d z_pre = dh * (h_prev - n) * z (1 - z)
    #   d n_pre = dh * (1 - z) * (1 - n^2)         (= d x_n)
    #   d r_pre = d n_pre * u_n * r (1 - r)
    #   d u_n   = d n_pre * r
    coef_z = hiddens[:-1] - n
    coef_z *= z
    coef_z *= 1.0 - z
    coef_n = n * n
    np.subtract(1.0, coef_n, out=coef_n)
    coef_n *= 1.0 - z
    coef_r = r * (1.0 - r)
    coef_r *= recurrent[..., 2 * hidden :]

    d_x = np.empty_like(gates)
    d_u = np.empty_like(gates)
    kernel_t = np.ascontiguousarray(recurrent_kernel.T)
    dh_rec = np.zeros((batch, hidden), dtype=dtype)
    dh = np.empty((batch, hidden), dtype=dtype)
    direct = np.empty((batch, hidden), dtype=dtype)
    z_, r_, n_ = (slice(k * hidden, (k + 1) * hidden) for k in range(3))
    for t in range(steps - 1, -1, -1):
        du = d_u[t]
        dn = d_x[t][:, n_]
        np.add(dh_out[t], dh_rec, out=dh)
        np.multiply(dh, coef_z[t], out=du[:, z_])
        np.multiply(dh, coef_n[t], out=dn)
        np.multiply(dn, coef_r[t], out=du[:, r_])
        np.multiply(dn, r[t], out=du[:, n_])
        np.multiply(dh, z[t], out=direct)
        np.matmul(du, kernel_t, out=dh_rec)
        dh_rec += direct
    d_x[..., : 2 * hidden] = d_u[..., : 2 * hidden]
    return d_x, d_u, (dh_rec,)
