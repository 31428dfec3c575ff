"""Inverted dropout with masks from stateless random ops, shared by both architectures."""

from __future__ import annotations

import tensorflow as tf


class Dropout:
    """Inverted dropout (Srivastava et al. 2014) with masks from stateless random ops: the
    ``k``-th mask drawn while tracing uses the seed ``fold_in(seed, k)``. The sites are
    drawn in a fixed order, so one ``seed`` (int64 [2], from the build seed, the updates
    taken and the batch's position in the accumulation list) fixes every mask of a
    training step, and a resumed run draws the same ones.

    Args:
        rate: the drop probability of a call that names none.
        seed: int64 [2] stateless seed.
    """

    def __init__(self, rate: float, seed: tf.Tensor):
        self.rate, self.seed, self.count = rate, seed, 0

    def __call__(self, x: tf.Tensor, rate: float | None = None) -> tf.Tensor:
        """``x`` with each element zeroed with probability ``rate`` (default: the
        constructor's) and the rest scaled by ``1 / (1 - rate)``; ``x`` itself at rate 0."""
        rate = self.rate if rate is None else rate
        self.count += 1  # counted even at rate 0, so one rate does not move another's masks
        if rate == 0:
            return x
        seed = tf.random.experimental.stateless_fold_in(self.seed, self.count)
        return tf.nn.experimental.stateless_dropout(x, rate, seed=seed)


def step_seed(seed: tf.Tensor, update: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """The int64 [2] dropout seed of the batch at ``position`` in the accumulation list of
    update ``update`` (both int scalars) of a model built with ``seed``."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(update, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(position, tf.int64))
