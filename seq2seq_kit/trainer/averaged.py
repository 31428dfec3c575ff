"""Validating the moving average of the weights (``[train] ema_decay``,
:mod:`seq2seq_kit.ema`): the average goes into the model for a validation, and the weights
come back after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..backend import Model


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
