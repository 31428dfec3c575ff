"""A training run's saves: when one is due by the clock, never two of one state, never
non-finite weights, and what the model directory holds when the run stops early."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..backend import Model
from ..errors import TrainingError, option
from .state import TrainerState


class Checkpoints:
    """Calls ``save`` when due, never with non-finite weights, and says what the model
    directory holds for the messages of a stopped run."""

    def __init__(
        self,
        save: Callable[[TrainerState], None] | None,
        out_dir: str | None,
        every_seconds: float,
    ):
        self.save, self.out_dir, self.every_seconds = save, out_dir, every_seconds
        self.last_time = time.perf_counter()
        # (epoch, step, stopped) of this run's last save: a second save of the same state is
        # skipped, one that records why training stopped is not
        self.saved_at: tuple[int, int, str | None] | None = None

    def due(self) -> bool:
        """Whether ``every_seconds`` have passed since the last save (or since this run
        began)."""
        return time.perf_counter() - self.last_time >= self.every_seconds

    def write(self, model: Model, state: TrainerState, where: str) -> None:
        """``save(state)``, unless there is no ``save`` or this state is the one saved last.

        Raises:
            TrainingError: a weight of ``model`` is not finite (the message starts with
                ``where``, the epoch and step); nothing is saved.
        """
        if self.save is None or self.saved_at == (state.epoch, state.step, state.stopped):
            return
        bad = [name for name, w in model.get_weights().items() if not np.isfinite(w).all()]
        if bad:
            raise TrainingError(
                f"{where}: the weights hold non-finite values ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); training stopped and {self.kept()}"
            )
        self.save(state)
        self.last_time = time.perf_counter()
        self.saved_at = (state.epoch, state.step, state.stopped)

    def kept(self) -> str:
        """What a run that stops now leaves behind, e.g. for a non-finite loss."""
        if self.save is None and self.out_dir is not None:  # a rank other than 0
            return f"{self.out_dir} keeps the last checkpoint rank 0 wrote"
        if self.save is None:
            return "nothing was saved (no output directory)"
        where = self.out_dir or "the model directory"
        if self.saved_at is None:
            return f"nothing was written to {where}"
        epoch, step, _ = self.saved_at
        if step:
            return f"{where} keeps the checkpoint written at epoch {epoch + 1} step {step}"
        return f"{where} keeps the checkpoint written after epoch {epoch}"

    def interrupted(self, epoch: int, step: int) -> str:
        """The message of a run interrupted at ``step`` of ``epoch`` (counted from 1): what
        was saved where, and how to go on."""
        said = f"interrupted at epoch {epoch} step {step}"
        if self.save is None and self.out_dir is not None:  # a rank other than 0
            return f"{said}; rank 0 saved to {self.out_dir}"
        if self.save is None:
            return f"{said}; nothing was saved (no output directory)"
        if self.out_dir is None:
            return f"{said}; saved"
        return f"{said}; saved to {self.out_dir}; continue with {option('resume', self.out_dir)}"
