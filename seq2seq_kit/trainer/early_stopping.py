"""Validation during training and what it decides: each validation scored once per update
count and reported, the best score and weights, early stopping (patience) and the learning
rate cut on a plateau."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backend import Model
from ..config import TrainConfig
from ..errors import TrainingError
from ..runtime import ProcessGroup
from .averaged import averaged_weights
from .cadence import Checkpoints
from .log import log_validation
from .state import Ids, TrainerState, where


@dataclass(frozen=True)
class Scoring:
    """What a run validates on, and how.

    Attributes:
        pairs: the sources' and targets' token ids scored: the validation pairs, or the
            training pairs when there are none.
        has_valid: whether ``pairs`` are validation pairs; only then do their scores decide
            the best weights, patience and plateaus.
        evaluate: ``(model, sources, targets, group)`` to the mean loss (nats per target
            token) and the token accuracy, the same on every rank
            (:func:`seq2seq_kit.trainer.evaluate`).
    """

    pairs: tuple[Ids, Ids]
    has_valid: bool
    evaluate: Callable[[Model, Ids, Ids, ProcessGroup], tuple[float, float]]


class Validator:
    """Validates one run, at most once per update count: each validation is logged (within
    an epoch), reported to ``on_validation`` and, unless made only because the run stops
    there, tracks the best score (:func:`track_best`)."""

    def __init__(
        self,
        model: Model,
        config: TrainConfig,
        state: TrainerState,
        scoring: Scoring,
        group: ProcessGroup,
        on_validation: Callable[[dict[str, Any]], None] | None,
        checkpoints: Checkpoints,
    ):
        self.model, self.config, self.state, self.scoring = model, config, state, scoring
        self.group, self.on_validation, self.checkpoints = group, on_validation, checkpoints
        self.validated_at: int | None = None  # update count of the last validation
        self.last: tuple[float, float, bool] = (math.nan, math.nan, False)

    def validate(self, mid_epoch: bool = False, at_stop: bool = False) -> tuple[float, float, bool]:
        """Evaluate the model now (once per update count: a second call at the same update
        gives the first one's figures) and, unless ``at_stop``, track the best score;
        returns the loss, the accuracy and whether patience ran out.

        ``at_stop``: a validation due only because training stops here; it is reported
        and recorded, but an uninterrupted run would not have made it, so it must not
        move what a resumed run carries on from (patience, plateau, best score and
        weights).

        With ``config.ema_decay``, what is validated, and kept as the best weights, is the
        moving average of the weights (:func:`averaged_weights`); training goes on from the
        weights.

        Raises:
            TrainingError: the loss is not finite.
        """
        if self.validated_at == self.state.updates:
            return self.last
        with averaged_weights(self.model, self.config.ema_decay > 0):
            return self._validate(mid_epoch, at_stop)

    def _validate(self, mid_epoch: bool, at_stop: bool) -> tuple[float, float, bool]:
        """:meth:`validate` of the weights the model holds."""
        state, config, has_valid = self.state, self.config, self.scoring.has_valid
        start = time.perf_counter()
        loss, accuracy = self.scoring.evaluate(self.model, *self.scoring.pairs, self.group)
        state.epoch_seconds += time.perf_counter() - start
        on = "validation" if has_valid else "training-set"
        if not math.isfinite(loss):
            raise TrainingError(
                f"{where(state)}: the {on} loss is {loss} (not finite); training stopped "
                f"and {self.checkpoints.kept()}"
            )
        before = state.best_score
        score = loss if config.early_stopping_metric == "loss" else -accuracy
        patience_out = False if at_stop else track_best(self.model, state, config, score, has_valid)
        self.validated_at, self.last = state.updates, (loss, accuracy, patience_out)
        if mid_epoch:
            log_validation(state, loss, accuracy, has_valid, at_stop)
        if self.on_validation is not None:
            self.on_validation(
                {
                    "update": state.updates,
                    "epoch": state.epoch + 1,
                    "step": state.step,
                    "valid_loss": loss,
                    "valid_accuracy": accuracy,
                    "evaluated_on": "valid" if has_valid else "train",
                    "best": has_valid and state.best_score < before,
                    "at_stop": at_stop,
                }
            )
        return self.last

    def at_stop(self, learning_rate: float) -> None:
        """Validate the weights a run stops with in the middle of an epoch, for the record
        only, unless this update was validated anyway: the validation is appended to
        ``state.history`` with an epoch record's keys for the epoch so far (``learning_rate``:
        of its last update), plus ``step`` and ``"at_stop": True``."""
        state = self.state
        if self.validated_at == state.updates:
            return
        loss, accuracy, _ = self.validate(mid_epoch=True, at_stop=True)
        state.history.append(
            {
                "epoch": state.epoch + 1,
                "step": state.step,
                "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
                "valid_loss": loss,
                "valid_accuracy": accuracy,
                "evaluated_on": "valid" if self.scoring.has_valid else "train",
                "learning_rate": learning_rate,
                "seconds": state.epoch_seconds,
                "updates": state.updates,
                "at_stop": True,
            }
        )


def track_best(
    model: Model, state: TrainerState, config: TrainConfig, score: float, has_valid: bool
) -> bool:
    """Update best weights, early stopping and the plateau schedule from this epoch's
    ``score`` (lower is better); True means stop. Without validation pairs (``has_valid``
    false) the score, of the training pairs, is recorded and decides nothing."""
    if not has_valid:
        state.best_score, state.best_weights = score, None
        return False
    if score < state.best_score:
        state.best_score, state.best_weights = score, model.get_weights()
        state.bad_epochs = state.plateau_epochs = 0
        return False
    state.bad_epochs += 1
    state.plateau_epochs += 1
    if config.lr_patience and state.plateau_epochs >= config.lr_patience:
        lowered = max(state.learning_rate * config.lr_factor, config.min_learning_rate)
        if lowered < state.learning_rate:
            state.learning_rate = lowered
            model.set_learning_rate(lowered)
        state.plateau_epochs = 0
    return bool(config.patience) and state.bad_epochs >= config.patience
