"""The exponential moving average (EMA) of the weights, ``[train] ema_decay``: its one
definition. A backend declaring the ``ema`` capability keeps the average on its own device
and updates it inside ``train_step``
(:attr:`OptimizerSpec.ema_decay <seq2seq_kit.spec.OptimizerSpec>`); the NumPy reference
computes it with :func:`ema_update`, and the conformance suite holds every backend to it.

After optimizer update ``t`` (counted from 1 over the whole run; an update a backend skips,
as fp16 loss scaling does on an overflow, is none), with ``theta_t`` the weights it leaves
and ``d`` the decay::

    ema_1 = theta_1
    ema_t = d * ema_{t-1} + (1 - d) * theta_t        for t > 1

Before the first update the average is the weights themselves. Each weight is averaged on
its own, element by element; a frozen weight
(:attr:`OptimizerSpec.frozen <seq2seq_kit.spec.OptimizerSpec>`) is its own average, bit for
bit (``d * w + (1 - d) * w`` may differ from ``w`` by a rounding: it is copied, not
averaged, as fairseq copies the weights it skips).

The update is fairseq's ``--ema-decay`` (``fairseq/models/ema/ema.py``,
``EMA._step_internal``: ``ema.mul_(decay); ema.add_(param, alpha=1 - decay)`` after every
update), with the average started from the weights of the first update rather than from the
initial ones, as Keras' ``use_ema`` does (its momentum is 0 at the first step), so the random
initial weights count for nothing. Marian's ``--exponential-smoothing``
(``src/optimizers/exponential_smoothing.cpp``) also raises the weight of the new weights
early in training, to ``max(1 - d, 1 - (t + 1) / (t + 10))`` (TensorFlow's
``ExponentialMovingAverage(num_updates=)`` warm-up), and rescales ``d`` by the update's
target words; neither is done here: with a typical ``d`` of 0.999 the first update's start
already keeps the initialisation out, and a plain ``d`` reads the same on every backend and
in every paper that reports one.
"""

from __future__ import annotations

import math

import numpy as np

#: The prefix of the average's entries in an optimizer state (``"ema/NAME"`` for every
#: canonical weight NAME; see :func:`seq2seq_kit.weights.check_optimizer_state`).
PREFIX = "ema/"


def check_decay(decay: float) -> float:
    """``decay`` as a float, when in [0, 1) (0: no average).

    Raises:
        ValueError: naming the value, outside [0, 1) or not a finite number.
    """
    try:
        value = float(decay)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) (0: off; typical 0.999), got {decay!r}")
    return value


def ema_update(average: np.ndarray, weights: np.ndarray, decay: float, *, first: bool) -> None:
    """One update of the average, in place: ``average <- weights`` at the ``first`` update,
    else ``average <- decay * average + (1 - decay) * weights``, evaluated in the arrays'
    dtype as PyTorch's ``mul_`` then ``add_(alpha=)`` (fairseq's) evaluates it.

    Args:
        average: float array, the average so far (any value before the first update).
        weights: the weights after the update, ``average``'s shape (and dtype, or one that
            casts to it).
        decay: ``d`` in [0, 1).
        first: whether this is the run's first update.
    """
    if first:
        np.copyto(average, weights)
        return
    average *= decay
    average += np.multiply(weights, 1.0 - decay, dtype=average.dtype)
