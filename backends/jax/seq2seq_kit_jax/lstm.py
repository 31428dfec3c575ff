"""The LSTM cell of :mod:`seq2seq_kit.weights` as a pure JAX function of one time step.

Gates ``i, f, g, o`` along the last axis, row vectors times kernels::

    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The input projection ``x_t @ kernel + bias`` of every step is computed by the caller before
the time loop (one matmul, or a row gather for one-hot inputs); :func:`step` adds the
recurrent part. This module and :mod:`.gru` share one interface: ``NUM_STATES``,
:func:`split_bias` and :func:`step`; a state is a tuple of [B, h] arrays, ``(h, c)`` here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Arrays in the recurrent state: ``(h, c)``.
NUM_STATES = 2


def split_bias(bias: jax.Array) -> tuple[jax.Array, None]:
    """``(input bias, recurrent bias)``: the LSTM's one bias goes with the input projection."""
    return bias, None


def step(
    projected: jax.Array,
    state: tuple[jax.Array, jax.Array],
    recurrent_kernel: jax.Array,
    recurrent_bias: None = None,
) -> tuple[jax.Array, jax.Array]:
    """One step: [B, 4h] ``x_t @ kernel + bias`` and ``(h, c)`` -> the new ``(h, c)``."""
    h, c = state
    z = projected + h @ recurrent_kernel
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(zf) * c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
    h = jax.nn.sigmoid(zo) * jnp.tanh(c)
    return h, c
