"""The moving average of the weights (``OptimizerSpec.ema_decay``) as the core defines it
(:mod:`seq2seq_kit.ema`): one float32 shadow variable per canonical weight, on the weights'
device (mirrored like them under a distribution strategy), updated inside the compiled
training step.

Importing this module imports TensorFlow.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops


class Ema:
    """Shadows of ``variables`` (canonical name -> Keras variable), built in the scope the
    model's variables are built in; nothing when ``decay`` is 0.

    :meth:`update` runs in the compiled step, after Adam: ``shadow * keep + weight * take``
    with ``(keep, take)`` ``(d, 1 - d)``, ``(0, 1)`` at the run's first update, and
    ``(1, 0)`` when the step took no update (fp16 loss scaling skips one whose gradient
    overflows), so one traced graph serves every case. The weights of ``frozen`` are copied
    into their shadows, not averaged: they stay bit-identical.

    Attributes:
        decay: ``d``.
        shadows: canonical name -> float32 ``tf.Variable`` (not trainable).
    """

    def __init__(self, variables: dict, decay: float, frozen: frozenset[str] | set[str]):
        self.decay = decay
        self.shadows = {
            name: tf.Variable(
                np.zeros(tuple(variable.shape), np.float32),
                trainable=False,
                name=f"ema_{index}",
            )
            for index, (name, variable) in enumerate(variables.items() if decay else ())
        }
        self._pairs = [
            (self.shadows[name], variables[name], name in frozen) for name in self.shadows
        ]
        self._keep = np.float32(decay)
        self._take = np.float32(1.0 - decay)

    def update(self, before, after) -> None:
        """Average in the weights, in a traced function: ``before`` and ``after`` are the
        optimizer's update count read before and after its step."""
        if not self.decay:
            return
        stepped = ops.greater(after, before)
        first = ops.equal(after, 1)
        keep = ops.where(stepped, ops.where(first, 0.0, self._keep), 1.0)
        take = ops.where(stepped, ops.where(first, 1.0, self._take), 0.0)
        for shadow, variable, frozen in self._pairs:
            if frozen:
                shadow.assign(variable)
            else:
                shadow.assign(shadow * keep + ops.cast(variable, "float32") * take)

    def weights(self) -> dict[str, np.ndarray]:
        """Float32 copies of the shadows by canonical name."""
        return {
            name: np.array(v.numpy(), np.float32, copy=True) for name, v in self.shadows.items()
        }

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Assign each shadow its ``arrays`` entry (canonical name -> array)."""
        for name, shadow in self.shadows.items():
            shadow.assign(np.asarray(arrays[name], dtype=np.float32))
