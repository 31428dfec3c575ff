"""Adam with global gradient-norm clipping, as :class:`seq2seq_kit.spec.OptimizerSpec` says,
as a pure function, plus the validation of a saved optimizer state.

The update for step ``t`` (1-based), with ``g`` the clipped gradient::

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
    """The static (compiled-in) part of :class:`OptimizerSpec`."""

    beta1: float
    beta2: float
    epsilon: float
    clip_norm: float

    @classmethod
    def of(cls, spec: OptimizerSpec) -> Hyper:
        return cls(float(spec.beta1), float(spec.beta2), float(spec.epsilon), float(spec.clip_norm))


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
    lr_scale: jax.Array,
    bias2_root: jax.Array,
) -> tuple[dict, jax.Array, jax.Array]:
    """One Adam step (pure): weights and gradients as dicts, the moments as flat vectors;
    returns the new ``(params, m, v)``. ``lr_scale`` and ``bias2_root`` come from
    :func:`step_scalars`."""
    theta, unravel = ravel_pytree(params)
    g, _ = ravel_pytree(grads)
    if hyper.clip_norm > 0:
        norm = jnp.sqrt(jnp.sum(g * g))
        safe = jnp.where(norm > 0, norm, 1.0)
        g = g * jnp.where(norm > hyper.clip_norm, hyper.clip_norm / safe, 1.0)
    m = hyper.beta1 * m + (1.0 - hyper.beta1) * g
    v = hyper.beta2 * v + (1.0 - hyper.beta2) * (g * g)
    theta = theta - (m / (jnp.sqrt(v) / bias2_root + hyper.epsilon)) * lr_scale
    return unravel(theta), m, v


def flatten(tree: dict[str, np.ndarray]) -> jax.Array:
    """A dict of per-weight arrays (moments) as one flat float32 vector, in the order of
    :func:`update`."""
    return ravel_pytree({k: jnp.asarray(v, jnp.float32) for k, v in tree.items()})[0]


def unflatten(flat: jax.Array, like: dict) -> dict[str, jax.Array]:
    """The inverse of :func:`flatten`, shaped as the dict ``like``."""
    return ravel_pytree(like)[1](flat)


def check_state(shapes: dict[str, tuple[int, ...]], arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped entry of a saved
    optimizer state (``step``, ``learning_rate``, ``seed``, ``m/NAME``, ``v/NAME``), or a
    bad step, learning rate, seed or moment."""
    expected: dict[str, tuple[int, ...]] = {"step": (), "learning_rate": (), "seed": ()}
    for name, shape in shapes.items():
        expected[f"m/{name}"] = expected[f"v/{name}"] = shape
    problems = [f"missing {key} {shape}" for key, shape in expected.items() if key not in arrays]
    problems += [f"unexpected {key}" for key in arrays if key not in expected]
    problems += [
        f"{key} has shape {arrays[key].shape}, expected {shape}"
        for key, shape in expected.items()
        if key in arrays and arrays[key].shape != shape
    ]
    for key in ("step", "seed"):
        value = arrays.get(key)
        if value is not None and value.shape == () and not np.issubdtype(value.dtype, np.integer):
            problems.append(f"{key} must be an integer, got {value!r}")
    step = arrays.get("step")
    if (
        step is not None
        and step.shape == ()
        and np.issubdtype(step.dtype, np.integer)
        and int(step) < 0
    ):
        problems.append(f"step must be >= 0, got {int(step)}")
    rate = arrays.get("learning_rate")
    if (
        rate is not None
        and rate.shape == ()
        and (
            not np.issubdtype(rate.dtype, np.floating)
            or not (math.isfinite(float(rate)) and float(rate) >= 0.0)
        )
    ):
        problems.append(f"learning_rate must be a finite float >= 0, got {rate!r}")
    for key in expected:
        if key.startswith(("m/", "v/")) and key in arrays:
            value = arrays[key]
            if not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{key} has dtype {value.dtype}, expected float32")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key} holds non-finite values")
            elif key.startswith("v/") and value.size and value.min() < 0:
                problems.append(f"{key} holds negative values")
    if problems:
        raise ValueError("optimizer state does not match the model: " + "; ".join(problems))
