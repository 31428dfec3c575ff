"""Validating the moving average of the weights (``[train] ema_decay``,
:mod:`seq2seq_kit.ema`): the average goes into the model for a validation, and the weights
come back after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..backend import EmaModel, Model


def check_averaging(model: Model, decay: float) -> None:
    """Refuse, before training, a ``train.ema_decay`` above 0 with a model that keeps no
    moving average.

    Raises:
        TypeError: ``decay`` > 0 and ``model`` has no ``ema_weights`` (it was not built by
            a backend declaring the ``ema`` capability).
    """
    if decay and not isinstance(model, EmaModel):
        raise TypeError(
            f"train.ema_decay = {decay} needs a model that keeps a moving average of its "
            f"weights (capability 'ema': EmaModel.ema_weights); {type(model).__name__} has "
            f"none"
        )


@contextlib.contextmanager
def averaged_weights(model: Model, on: bool) -> Iterator[None]:
    """With ``on``, ``model`` holds its moving average (``model.ema_weights()``, see
    :class:`~seq2seq_kit.backend.EmaModel`) inside the block, and its weights again after
    it, bit for bit (float32 copies in the canonical layout, put back as they were taken),
    so training goes on from exactly the weights it left; without ``on``, nothing changes.
    The average itself is not touched: ``set_weights`` leaves it alone."""
    if not on:
        yield
        return
    weights = model.get_weights()
    model.set_weights(model.ema_weights())
    try:
        yield
    finally:
        model.set_weights(weights)
