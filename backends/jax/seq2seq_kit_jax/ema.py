"""The moving average of the weights (``OptimizerSpec.ema_decay``) as the core defines it
(:mod:`seq2seq_kit.ema`), as a pure function over one flat vector laid out as the
optimizer's moments (:func:`jax.flatten_util.ravel_pytree` order of the weights)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def factors(decay: float, step: int) -> tuple[np.float32, np.float32]:
    """``(keep, take)`` of update ``step`` (from 1): ``(0, 1)`` at the first, else
    ``(decay, 1 - decay)``; arguments of the compiled :func:`update`, so that neither
    recompiles it."""
    if step == 1:
        return np.float32(0.0), np.float32(1.0)
    return np.float32(decay), np.float32(1.0 - decay)


@functools.partial(jax.jit, static_argnums=0)
def update(
    frozen: tuple[str, ...], average: jax.Array, params: dict, keep: jax.Array, take: jax.Array
) -> jax.Array:
    """The new flat average (pure): ``average * keep + theta * take``, ``theta`` the flat
    ``params``; the weights of ``frozen`` (compiled in) are copied, not averaged, so they
    stay bit-identical."""
    theta = ravel_pytree(params)[0]
    new = average * keep + theta * take
    if not frozen:
        return new
    flags = {k: jnp.full(jnp.shape(p), k not in frozen) for k, p in params.items()}
    return jnp.where(ravel_pytree(flags)[0], new, theta)
