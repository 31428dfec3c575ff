"""Inverted dropout (Srivastava et al. 2014) whose masks ignore padding.

A mask element is drawn from the dropout key folded with the site number and then with each
index of the array's leading axes (row, position, ...), so a real element's mask does not
depend on how far the batch was padded (see :mod:`.padding`): padding to a bucket changes
no result, with dropout too.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def uniform(key: jax.Array, leading: tuple[int, ...], width: int) -> jax.Array:
    """float32 [*leading, width] uniform draws in [0, 1); entry ``(i, j, ..., :)`` comes from
    ``key`` folded with ``i``, then ``j``, ... (so it does not depend on ``leading``'s sizes)."""
    if not leading:
        return jax.random.uniform(key, (width,))
    return jax.vmap(lambda i: uniform(jax.random.fold_in(key, i), leading[1:], width))(
        jnp.arange(leading[0])
    )


class Dropout(NamedTuple):
    """Inverted dropout at ``rate`` (a traced float32 scalar: 0 keeps every unit with
    scale 1, exactly no dropout) with masks drawn from ``key``.

    Calling it as ``drop(site, x, leading)`` zeroes each element of ``x`` with probability
    ``rate`` and scales the others by ``1 / (1 - rate)``. Elements sharing the first
    ``leading`` indices get one draw of ``x.shape[leading:]`` uniforms keyed by those
    indices and ``site``, which tells apart the places dropout is applied.
    """

    key: jax.Array
    rate: jax.Array

    def __call__(self, site: int, x: jax.Array, leading: int = 2) -> jax.Array:
        width = 1
        for size in x.shape[leading:]:
            width *= size
        draws = uniform(jax.random.fold_in(self.key, site), x.shape[:leading], width)
        keep = draws.reshape(x.shape) >= self.rate
        return x * (keep.astype(x.dtype) / (1.0 - self.rate))
