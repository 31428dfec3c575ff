"""The GRU cell of :mod:`seq2seq_kit.weights` as a pure JAX function of one time step.

Gates ``z, r, n`` along the last axis (Keras' order), the reset gate applied after the
recurrent matmul (Keras ``reset_after=True``, PyTorch ``nn.GRU``)::

    x = x_t @ kernel + bias[0];  u = h_{t-1} @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + u_z);  r = sigmoid(x_r + u_r);  n = tanh(x_n + r * u_n)
    h_t = z * h_{t-1} + (1 - z) * n

Same interface as :mod:`.lstm`; the state is ``(h,)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Arrays in the recurrent state: ``(h,)``.
NUM_STATES = 1


def split_bias(bias: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(input bias, recurrent bias)``: rows 0 and 1 of the [2, 3h] bias."""
    return bias[0], bias[1]


def step(
    projected: jax.Array,
    state: tuple[jax.Array],
    recurrent_kernel: jax.Array,
    recurrent_bias: jax.Array,
) -> tuple[jax.Array]:
    """One step: [B, 3h] ``x = x_t @ kernel + bias[0]`` and ``(h,)`` -> the new ``(h,)``."""
    (h,) = state
    u = h @ recurrent_kernel + recurrent_bias
    xz, xr, xn = jnp.split(projected, 3, axis=-1)
    uz, ur, un = jnp.split(u, 3, axis=-1)
    z = jax.nn.sigmoid(xz + uz)
    r = jax.nn.sigmoid(xr + ur)
    n = jnp.tanh(xn + r * un)
    return (z * h + (1.0 - z) * n,)
