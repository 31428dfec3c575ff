"""Per-update learning-rate schedules: the step size of update ``n`` (counted from 1 over the
whole run), a pure function of ``n``, so a resumed run continues the schedule exactly."""

from __future__ import annotations

import math

from .architectures import model_width

__all__ = ["SCHEDULES", "learning_rate_at", "model_width"]

#: The values of ``train.lr_schedule``.
SCHEDULES = ("constant", "noam", "inverse_sqrt")


def learning_rate_at(
    schedule: str, update: int, learning_rate: float, *, warmup_steps: int, d_model: int
) -> float:
    """The step size of update number ``update`` (1 for the first).

    - ``constant``: ``learning_rate``, after a linear warmup ``learning_rate * n / warmup``
      over the first ``warmup_steps`` updates when that is > 0 (fairseq's ``fixed``
      schedule with ``--warmup-updates``).
    - ``noam``: ``learning_rate * d_model^-0.5 * min(n^-0.5, n * warmup^-1.5)``, Vaswani et
      al. 2017 eq. 3 with ``learning_rate`` as OpenNMT's factor (its ``noam`` decay): a
      linear rise to ``learning_rate * (d_model * warmup)^-0.5`` at ``n = warmup``, then
      decay as ``n^-0.5``.
    - ``inverse_sqrt``: ``learning_rate * min(n / warmup, sqrt(warmup / n))``, fairseq's
      ``inverse_sqrt`` with its warmup starting from 0: a linear rise to ``learning_rate``
      at ``n = warmup``, then decay as ``n^-0.5``.

    Raises:
        ValueError: ``update`` below 1, an unknown ``schedule``, or ``noam`` /
            ``inverse_sqrt`` with ``warmup_steps`` below 1.
    """
    if update < 1:
        raise ValueError(f"update numbers start at 1, got {update}")
    if schedule == "constant":
        if warmup_steps > 0:
            return learning_rate * min(1.0, update / warmup_steps)
        return learning_rate
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup_steps < 1:
        raise ValueError(f"lr_schedule {schedule!r} needs warmup_steps >= 1, got {warmup_steps}")
    if schedule == "noam":
        return learning_rate * d_model**-0.5 * min(update**-0.5, update * warmup_steps**-1.5)
    return learning_rate * min(update / warmup_steps, math.sqrt(warmup_steps / update))
