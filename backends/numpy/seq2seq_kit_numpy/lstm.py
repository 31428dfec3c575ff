"""LSTM layer numerics in NumPy: sequence forward, backpropagation through time, one step.

The cell is the one of :mod:`seq2seq_kit.weights` (gates ``i, f, g, o`` along the last
axis, row vectors times kernels)::

    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Arrays are time-major: ``[T, B, ...]``, so that the slice of one step is contiguous. The
input projection ``x_t @ kernel + bias`` of every step is computed by the caller in one
matmul (or row gather) before the loop; only ``h_{t-1} @ recurrent_kernel`` runs per step.

This module and :mod:`.gru` share one interface, so that the model dispatches on the cell:
``NUM_STATES``, :func:`split_bias`, :func:`forward`, :func:`step`, :func:`backward`,
:func:`bias_gradient` and ``Cache.states``. A state is a tuple of [B, H] arrays: ``(h, c)``
here, ``(h,)`` for the GRU.

All four gates go through a single ``tanh``: ``sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5``, and
the 0.5 is folded into the pre-activations (the input projections once per sequence, the
recurrent kernel once per call). Scaling by 0.5 or 1 is exact in binary floating point, so
the gates equal those of the textbook formula up to the rounding of ``tanh`` itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

#: Arrays in the recurrent state: ``(h, c)``.
NUM_STATES = 2


def split_bias(bias: np.ndarray) -> tuple[np.ndarray, None]:
    """``(input bias, recurrent bias)``: the LSTM's one bias goes with the input projection;
    there is no bias inside the recurrence."""
    return bias, None


def bias_gradient(out: np.ndarray, d_x: np.ndarray, d_u: np.ndarray) -> None:
    """Write the bias gradient into ``out`` [4H] from the flat [N, 4H] gate gradients."""
    np.sum(d_x, axis=0, out=out)


class Cache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward` (``T`` steps, ``B`` rows, ``H`` units).

    Attributes:
        gates: [T, B, 4H] gate activations ``i, f, g, o`` (after the nonlinearities).
        cells: [T+1, B, H] cell states; ``cells[0]`` is ``c0``, ``cells[t+1]`` is ``c_t``.
        hiddens: [T+1, B, H] hidden states; ``hiddens[0]`` is ``h0``.
        tanh_cells: [T, B, H] ``tanh(c_t)``.
        recurrent_kernel: [H, 4H] the (unscaled) recurrent kernel used.
    """

    gates: np.ndarray
    cells: np.ndarray
    hiddens: np.ndarray
    tanh_cells: np.ndarray
    recurrent_kernel: np.ndarray

    @property
    def states(self) -> tuple[np.ndarray, np.ndarray]:
        """The state histories ``(hiddens, cells)``, each [T+1, B, H]."""
        return self.hiddens, self.cells


@lru_cache(maxsize=64)
def gate_coefficients(hidden: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(scale, shift)``, each [4H] of ``dtype`` and read-only, such that the gate
    activations are ``tanh(scale * z) * scale + shift``: ``scale`` is 0.5 and ``shift`` 0.5
    on the sigmoid gates (i, f, o), 1 and 0 on the candidate g (``sigmoid(z) = (1 +
    tanh(z / 2)) / 2``)."""
    scale = np.full(4 * hidden, 0.5, dtype=dtype)
    scale[2 * hidden : 3 * hidden] = 1.0
    shift = np.full(4 * hidden, 0.5, dtype=dtype)
    shift[2 * hidden : 3 * hidden] = 0.0
    scale.flags.writeable = shift.flags.writeable = False
    return scale, shift


def forward(
    projected: np.ndarray,
    recurrent_kernel: np.ndarray,
    recurrent_bias: None,
    state: tuple[np.ndarray, np.ndarray],
) -> Cache:
    """Run the LSTM over a whole sequence.

    Args:
        projected: [T, B, 4H] ``x_t @ kernel + bias`` for every step; this buffer is reused
            for the gate activations (it is overwritten and becomes ``Cache.gates``).
        recurrent_kernel: [H, 4H].
        recurrent_bias: None (the interface's slot for the GRU's recurrent bias).
        state: ``(h0, c0)``, [B, H] each, the initial state (not modified).

    Returns:
        The :class:`Cache`; the outputs ``h_1 .. h_T`` are ``cache.hiddens[1:]``.
    """
    h0, c0 = state
    steps, batch, width = projected.shape
    hidden = width // 4
    dtype = projected.dtype
    scale, shift = gate_coefficients(hidden, dtype)
    projected *= scale
    scaled_kernel = recurrent_kernel * scale
    gates = projected
    cells = np.empty((steps + 1, batch, hidden), dtype=dtype)
    hiddens = np.empty((steps + 1, batch, hidden), dtype=dtype)
    tanh_cells = np.empty((steps, batch, hidden), dtype=dtype)
    cells[0] = c0
    hiddens[0] = h0
    z = np.empty((batch, width), dtype=dtype)
    input_x_cand = np.empty((batch, hidden), dtype=dtype)
    i_, f_, g_, o_ = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
    for t in range(steps):
        a = gates[t]
        np.matmul(hiddens[t], scaled_kernel, out=z)
        a += z
        np.tanh(a, out=a)
        a *= scale
        a += shift
        c = cells[t + 1]
        np.multiply(a[:, f_], cells[t], out=c)
        np.multiply(a[:, i_], a[:, g_], out=input_x_cand)
        c += input_x_cand
        np.tanh(c, out=tanh_cells[t])
        np.multiply(a[:, o_], tanh_cells[t], out=hiddens[t + 1])
    return Cache(gates, cells, hiddens, tanh_cells, recurrent_kernel)


def step(
    projected: np.ndarray,
    state: tuple[np.ndarray, np.ndarray],
    recurrent_kernel: np.ndarray,
    recurrent_bias: None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step for decoding: [B, 4H] ``x_t @ kernel + bias`` and the state ``(h, c)``,
    [B, H] each -> the new ``(h, c)``. Nothing passed in is modified.

    Same operations, in the same order, as one iteration of :func:`forward`, so decoding step
    by step reproduces the teacher-forced outputs.
    """
    h, c = state
    hidden = h.shape[-1]
    scale, shift = gate_coefficients(hidden, projected.dtype)
    a = projected * scale
    a += h @ (recurrent_kernel * scale)
    np.tanh(a, out=a)
    a *= scale
    a += shift
    i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
    c_new = f * c
    c_new += i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new


def backward(
    cache: Cache, dh_out: np.ndarray, d_carry: tuple[np.ndarray | None, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Backpropagation through time (Werbos 1990) for :func:`forward`.

    Args:
        cache: what :func:`forward` returned.
        dh_out: [T, B, H] d loss / d h_t arriving from outside the recurrence (the layer
            above, the output projection, or the handover to the decoder).
        d_carry: optional ``(dc_out,)``: [T, B, H] d loss / d c_t from outside (the handover
            of a final cell state that is reached before the last step, for shorter
            sources), or ``(None,)``.

    Returns:
        ``(d_x, d_u, (dh0, dc0))``: [T, B, 4H] d loss / d z_t (the pre-activations, unscaled),
        from which the caller gets the kernel, recurrent kernel and bias gradients and the
        input gradients with one matmul each (``d_u`` is ``d_x``: the LSTM adds input and
        recurrent projections before any nonlinearity); [B, H] gradients of the initial
        state.
    """
    dc_out = None if d_carry is None else d_carry[0]
    gates, cells, hiddens, tanh_cells, recurrent_kernel = cache
    steps, batch, width = gates.shape
    hidden = width // 4
    dtype = gates.dtype
    i_, f_, g_, o_ = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
    # d activation / d pre-activation for all steps at once: s(1-s) on sigmoid gates, 1-g^2.
    deriv = 1.0 - gates
    deriv *= gates
    cand = gates[..., g_]
    np.multiply(cand, cand, out=deriv[..., g_])
    np.subtract(1.0, deriv[..., g_], out=deriv[..., g_])
    # d c_t / d h_t-path factor o * (1 - tanh(c)^2), also for all steps at once.
    h_to_c = tanh_cells * tanh_cells
    np.subtract(1.0, h_to_c, out=h_to_c)
    h_to_c *= gates[..., o_]

    d_pre = np.empty_like(gates)
    kernel_t = np.ascontiguousarray(recurrent_kernel.T)
    dh_rec = np.zeros((batch, hidden), dtype=dtype)
    dc_rec = np.zeros((batch, hidden), dtype=dtype)
    dh = np.empty((batch, hidden), dtype=dtype)
    dc = np.empty((batch, hidden), dtype=dtype)
    for t in range(steps - 1, -1, -1):
        a = gates[t]
        dz = d_pre[t]
        np.add(dh_out[t], dh_rec, out=dh)
        np.multiply(dh, h_to_c[t], out=dc)
        dc += dc_rec
        if dc_out is not None:
            dc += dc_out[t]
        np.multiply(dc, a[:, g_], out=dz[:, i_])
        np.multiply(dc, cells[t], out=dz[:, f_])
        np.multiply(dc, a[:, i_], out=dz[:, g_])
        np.multiply(dh, tanh_cells[t], out=dz[:, o_])
        dz *= deriv[t]
        np.multiply(dc, a[:, f_], out=dc_rec)
        np.matmul(dz, kernel_t, out=dh_rec)
    return d_pre, d_pre, (dh_rec, dc_rec)
