"""The moving average of the weights (``OptimizerSpec.ema_decay``), as the core defines it
(:func:`seq2seq_kit.ema.ema_update`), over the model's flat weight buffer."""

from __future__ import annotations

import math

import numpy as np

from seq2seq_kit.ema import PREFIX, ema_update
from seq2seq_kit.spec import OptimizerSpec


class Ema:
    """The average of the flat weights: one vector laid out as the weights (``shapes``, in
    order), updated by :meth:`update` after every optimizer update.

    The weights of ``spec.frozen`` are copied into the average, not averaged, so that they
    stay bit-identical to the weights.

    Attributes:
        decay: ``spec.ema_decay`` (0: no average is kept).
        average: the flat average, the weights' dtype (before the first update: whatever the
            last restore held; :meth:`weights` then reads the weights).
        views: ``name -> view`` of ``average`` in each weight's shape.
    """

    def __init__(self, spec: OptimizerSpec, shapes: dict[str, tuple[int, ...]], dtype=np.float32):
        self.decay = spec.ema_decay
        size = sum(math.prod(shape) for shape in shapes.values()) if self.decay else 0
        self.average = np.zeros(size, dtype=dtype)
        self.views: dict[str, np.ndarray] = {}
        self._frozen: list[slice] = []
        offset = 0
        for name, shape in shapes.items() if self.decay else ():
            n = math.prod(shape)
            self.views[name] = self.average[offset : offset + n].reshape(shape)
            if name in spec.frozen:
                self._frozen.append(slice(offset, offset + n))
            offset += n

    def update(self, params: np.ndarray, step: int) -> None:
        """Average in the flat ``params`` that update ``step`` (from 1) left."""
        if not self.decay:
            return
        ema_update(self.average, params, self.decay, first=step == 1)
        for part in self._frozen:
            self.average[part] = params[part]

    def weights(self, current: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
        """Float32 copies of the average by name; ``current`` (the weights) before any update
        (``step`` 0) or without an average."""
        if not self.decay or step == 0:
            return {name: w.astype(np.float32, copy=True) for name, w in current.items()}
        return {name: w.astype(np.float32, copy=True) for name, w in self.views.items()}

    def state(self, current: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
        """``ema/NAME`` entries of the optimizer state (none without an average)."""
        if not self.decay:
            return {}
        return {PREFIX + name: w for name, w in self.weights(current, step).items()}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Take the ``ema/NAME`` entries of a checked optimizer state."""
        for name, view in self.views.items():
            view[...] = state[PREFIX + name]
