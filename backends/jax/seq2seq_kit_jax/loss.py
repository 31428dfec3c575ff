"""What training minimises: a padded batch as device arrays and its summed token loss."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Arrays(NamedTuple):
    """A padded batch as device arrays: int32 ``src_ids`` [B, S], ``src_lengths`` [B],
    ``tgt_in`` and ``tgt_out`` [B, T], float32 ``tgt_mask`` [B, T] (see :mod:`.padding`)."""

    src_ids: jax.Array
    src_lengths: jax.Array
    tgt_in: jax.Array
    tgt_out: jax.Array
    tgt_mask: jax.Array


def summed_loss(
    log_probs: jax.Array, tgt_out: jax.Array, mask: jax.Array, smoothing: jax.Array
) -> jax.Array:
    """The sum over positions where float32 [B, T] ``mask`` is 1 of the label-smoothed
    cross-entropy ``(1 - eps) * -log p(y) + eps * mean_v(-log p(v))`` (Szegedy et al. 2016,
    section 7; PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``), from float32 [B, T, V]
    ``log_probs`` and int [B, T] gold ids ``tgt_out``; ``eps = smoothing`` (0: plain
    cross-entropy). Dividing by the number of real positions (of every batch accumulated
    into one update) gives the mean the contract asks for."""
    gold = jnp.take_along_axis(log_probs, tgt_out[..., None], axis=-1)[..., 0]
    uniform = jnp.mean(log_probs, axis=-1)
    token = -((1.0 - smoothing) * gold + smoothing * uniform)
    return jnp.sum(token * mask)
