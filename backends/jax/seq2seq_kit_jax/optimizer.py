"""Adam with global gradient-norm clipping, as :class:`seq2seq_kit.spec.OptimizerSpec` says,
as a pure function, plus the validation of a saved optimizer state.

The update for step ``t`` (1-based), from the summed gradient ``G`` of the ``n`` real target
positions of the batches accumulated into it::

    g     <- G / n
    g     <- g * min(1, clip_norm / ||g||_2)       (all weights together; skipped if 0)
    m     <- beta1 * m + (1 - beta1) * g
    v     <- beta2 * v + (1 - beta2) * g^2
    theta <- theta - lr * m_hat / (sqrt(v_hat) + epsilon),
             m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)

evaluated as the reference (and ``torch.optim.Adam``) does: ``denom = sqrt(v) /
sqrt(1 - beta2^t) + epsilon``, ``theta -= (lr / (1 - beta1^t)) * m / denom``. The two
step-dependent scalars are computed on the host in float64 (:func:`step_scalars`) and enter
the compiled update as arguments, so a new step or learning rate never recompiles.

The moments live in two flat vectors (the weights raveled in
:func:`jax.flatten_util.ravel_pytree` order): one fused update instead of one per weight,
which halves the update's compile time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from seq2seq_kit.spec import OptimizerSpec


class Hyper(NamedTuple):
    """The static (compiled-in) part of :class:`OptimizerSpec`, its frozen weights too."""

    beta1: float
    beta2: float
    epsilon: float
    clip_norm: float
    frozen: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: OptimizerSpec) -> Hyper:
        return cls(
            float(spec.beta1),
            float(spec.beta2),
            float(spec.epsilon),
            float(spec.clip_norm),
            tuple(spec.frozen),
        )


def step_scalars(hyper: Hyper, learning_rate: float, t: int) -> tuple[np.float32, np.float32]:
    """``(lr / (1 - beta1^t), sqrt(1 - beta2^t))`` for update ``t`` (1-based), float32."""
    return (
        np.float32(learning_rate / (1.0 - hyper.beta1**t)),
        np.float32(math.sqrt(1.0 - hyper.beta2**t)),
    )


def update(
    hyper: Hyper,
    params: dict,
    grads: dict,
    m: jax.Array,
    v: jax.Array,
    grad_scale: jax.Array,
    lr_scale: jax.Array,
    bias2_root: jax.Array,
) -> tuple[dict, jax.Array, jax.Array]:
    """One Adam step (pure): weights and gradients as dicts, the moments as flat vectors;
    returns the new ``(params, m, v)``. The gradient is ``grads * grad_scale`` (``1 / n``
    for summed token gradients); ``lr_scale`` and ``bias2_root`` come from
    :func:`step_scalars`. The weights of ``hyper.frozen`` count with a zero gradient (in
    the clipping norm too) and keep their values and moments."""
    theta, unravel = ravel_pytree(params)
    g = ravel_pytree(grads)[0] * grad_scale
    trained = None
    if hyper.frozen:
        # a constant of the compiled update: True on the elements of trained weights
        flags = {k: jnp.full(jnp.shape(p), k not in hyper.frozen) for k, p in params.items()}
        trained = ravel_pytree(flags)[0]
        g = jnp.where(trained, g, 0.0)
    if hyper.clip_norm > 0:
        norm = jnp.sqrt(jnp.sum(g * g))
        safe = jnp.where(norm > 0, norm, 1.0)
        g = g * jnp.where(norm > hyper.clip_norm, hyper.clip_norm / safe, 1.0)
    m_new = hyper.beta1 * m + (1.0 - hyper.beta1) * g
    v_new = hyper.beta2 * v + (1.0 - hyper.beta2) * (g * g)
    step = (m_new / (jnp.sqrt(v_new) / bias2_root + hyper.epsilon)) * lr_scale
    if trained is None:
        return unravel(theta - step), m_new, v_new
    return (
        unravel(jnp.where(trained, theta - step, theta)),
        jnp.where(trained, m_new, m),
        jnp.where(trained, v_new, v),
    )


def flatten(tree: dict[str, np.ndarray]) -> jax.Array:
    """A dict of per-weight arrays (moments) as one flat float32 vector, in the order of
    :func:`update`."""
    return ravel_pytree({k: jnp.asarray(v, jnp.float32) for k, v in tree.items()})[0]


def unflatten(flat: jax.Array, like: dict) -> dict[str, jax.Array]:
    """The inverse of :func:`flatten`, shaped as the dict ``like``."""
    return ravel_pytree(like)[1](flat)
