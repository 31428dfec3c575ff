"""What a training run saves as it goes: its record kept current and the model directory
written, with the checkpoints it keeps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import Checkpoint
from .kept_checkpoints import KeptCheckpoints
from .run_record import RunRecord
from .trainer import TrainerState
from .translator import Translator


class RunSaves:
    """Keeps the run record current as training goes (the seconds spent, added to a
    resumed run's; the trainer's history, validations and state), hands the translator its JSON, and
    saves the model directory ``out`` with the checkpoints it keeps (``kept``)."""

    def __init__(
        self,
        translator: Translator,
        record: RunRecord,
        out: Path | None,
        kept: KeptCheckpoints | None = None,
    ):
        self.translator, self.record, self.out, self.kept = translator, record, out, kept
        self.clock = time.perf_counter()

    def note(self, state: TrainerState) -> None:
        now = time.perf_counter()
        self.record.seconds += now - self.clock
        self.clock = now
        self.record.history, self.record.trainer = state.history, state.to_json()
        self.record.validations = state.validations
        self.translator.meta = self.record.to_dict()

    def save(self, state: TrainerState) -> None:
        """Write the model directory: the best weights (the last without validation; with
        ``train.ema_decay``, the best average, or the last average), and for resuming, the
        last weights and the optimizer state (the average's state with it); and a
        checkpoint of the validation made at this update, if any, when it is one to keep
        (with its validation's weights: the average, with ``train.ema_decay``)."""
        self.note(state)
        model = self.translator.model
        ckpt = self.translator.checkpoint()
        last = ckpt.weights
        averaging = bool(self.record.config["train"].get("ema_decay"))
        current = model.ema_weights() if averaging else last  # what validation scores
        if state.best_weights is not None:
            ckpt.weights = state.best_weights
        elif averaging:
            ckpt.weights = current
        ckpt.extra = {"last": last, "optimizer": model.optimizer_state()}
        assert self.out is not None and self.kept is not None  # given to rank 0 with a directory
        tracked = state.tracked
        validation = None
        if tracked is not None and tracked.update == state.updates:
            validation = (tracked.update, tracked.epoch, tracked.step, tracked.score)
        listing = self.kept.save(
            ckpt, validation, lambda: snapshot(ckpt, current, state.best_weights)
        )
        self.record.checkpoints = listing or None
        self.translator.meta = self.record.to_dict()


def snapshot(
    ckpt: Checkpoint, weights: dict[str, np.ndarray], best: dict[str, Any] | None
) -> Checkpoint:
    """The checkpoint of the validation just made, from the directory's ``ckpt``: its
    ``weights`` are those the validation scored (the last ones, or their moving average);
    for resuming from it, every further tensor file the directory's save holds, and the
    best weights so far when they are others (``best.safetensors``;
    :func:`seq2seq_kit.resume.continue_run`)."""
    extra = dict(ckpt.extra)
    if best is not None and any(not np.array_equal(best[k], v) for k, v in weights.items()):
        extra["best"] = best
    return Checkpoint(
        ckpt.spec,
        ckpt.source_vocab,
        ckpt.target_vocab,
        weights,
        ckpt.max_length,
        ckpt.meta,
        extra,
        phrase_table=ckpt.phrase_table,
    )
