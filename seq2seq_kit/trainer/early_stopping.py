"""Validation during training and what it decides: each validation scored once per update
count and reported, the best score and weights, early stopping (patience) and the learning
rate cut on a plateau. The score that decides is :func:`selection_score` of the
validation's figures, lower is better, computed here alone."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backend import Model
from ..config import TrainConfig
from ..errors import TrainingError
from ..metrics import LOWER_IS_BETTER
from ..runtime import ProcessGroup
from .averaged import averaged_weights
from .cadence import Checkpoints
from .log import log_validation
from .state import Ids, Tracked, TrainerState, where

#: Decoded validation: ``(model, group)`` to ``{metric: score}`` of the model's outputs (the
#: names of :data:`seq2seq_kit.metrics.METRICS`), the same on every rank of ``group``
#: (:class:`seq2seq_kit.decoded_validation.DecodedValidation`).
DecodedScores = Callable[[Model, ProcessGroup], dict[str, float]]


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
        decoded: the scores of the model's decoded outputs on the same pairs
            (:data:`DecodedScores`), or None (``train.valid_metrics`` empty).
    """

    pairs: tuple[Ids, Ids]
    has_valid: bool
    evaluate: Callable[[Model, Ids, Ids, ProcessGroup], tuple[float, float]]
    decoded: DecodedScores | None = None


@dataclass(frozen=True)
class Validation:
    """The figures of one validation.

    Attributes:
        loss: teacher-forced mean loss, nats per target token.
        accuracy: teacher-forced token accuracy, 0..1.
        decoded: the decoded outputs' scores by metric name (empty without
            ``valid_metrics``).
        score: what decides, lower is better (:func:`selection_score`).
        patience_out: early stopping's patience ran out at this validation.
    """

    loss: float
    accuracy: float
    decoded: dict[str, float]
    score: float
    patience_out: bool

    def figures(self) -> dict[str, float]:
        """The figures as a record holds them: ``valid_loss``, ``valid_accuracy``, then
        ``valid_<metric>`` for each decoded metric, in ``valid_metrics``' order."""
        named = {f"valid_{name}": value for name, value in self.decoded.items()}
        return {"valid_loss": self.loss, "valid_accuracy": self.accuracy, **named}


def selection_score(metric: str, loss: float, accuracy: float, decoded: dict[str, float]) -> float:
    """The score that picks the best weights and drives patience and plateaus, lower is
    better: the loss, minus the accuracy, or the decoded ``metric``'s score, negated where
    higher is better (chrF, BLEU, exact match; not TER, CER, token error rate:
    :data:`seq2seq_kit.metrics.LOWER_IS_BETTER`).

    Raises:
        ValueError: ``metric`` is a decoded metric not in ``decoded`` (the config refuses an
            ``early_stopping_metric`` that ``valid_metrics`` does not list).
    """
    if metric == "loss":
        return loss
    if metric == "accuracy":
        return -accuracy
    if metric not in decoded:
        raise ValueError(f"early_stopping_metric {metric!r} was not computed (valid_metrics)")
    return decoded[metric] if metric in LOWER_IS_BETTER else -decoded[metric]


class Validator:
    """Validates one run, at most once per update count: each validation is logged (within
    an epoch), recorded in ``state.validations``, reported to ``on_validation`` and, unless
    made only because the run stops there, tracks the best score (:func:`track_best`)."""

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
        self.last = Validation(math.nan, math.nan, {}, math.nan, False)

    def validate(self, mid_epoch: bool = False, at_stop: bool = False) -> Validation:
        """Evaluate the model now (once per update count: a second call at the same update
        gives the first one's figures), decode and score its outputs with
        ``scoring.decoded`` if any, and, unless ``at_stop``, track the best score.

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
        on = "validation" if has_valid else "training-set"
        if not math.isfinite(loss):
            state.epoch_seconds += time.perf_counter() - start
            raise TrainingError(
                f"{where(state)}: the {on} loss is {loss} (not finite); training stopped "
                f"and {self.checkpoints.kept()}"
            )
        decoding = time.perf_counter()
        decoded = (
            {} if self.scoring.decoded is None else self.scoring.decoded(self.model, self.group)
        )
        now = time.perf_counter()
        state.epoch_seconds += now - start
        before = state.best_score
        score = selection_score(config.early_stopping_metric, loss, accuracy, decoded)
        patience_out = False if at_stop else track_best(self.model, state, config, score, has_valid)
        if not at_stop:  # the validation a checkpoint kept now is ranked by
            state.tracked = Tracked(state.updates, state.epoch + 1, state.step, score)
        self.validated_at = state.updates
        self.last = Validation(loss, accuracy, decoded, score, patience_out)
        best = has_valid and state.best_score < before
        record = {
            "update": state.updates,
            "epoch": state.epoch + 1,
            "step": state.step,
            **self.last.figures(),
            "evaluated_on": "valid" if has_valid else "train",
        }
        if best or not has_valid:
            # the validation of the weights a save keeps: the best, or without validation
            # pairs the last weights, judged by the latest validation
            state.best_validation = {"metric": config.early_stopping_metric, **record}
        if mid_epoch:
            log_validation(state, self.last.figures(), has_valid, at_stop, now - decoding)
        reported = {**record, "best": best, "at_stop": at_stop}
        if state.validations is not None:  # None: resumed from a run that recorded none
            state.validations.append(reported)
        if self.on_validation is not None:
            self.on_validation(dict(reported))
        return self.last

    def at_stop(self, learning_rate: float) -> None:
        """Validate the weights a run stops with in the middle of an epoch, for the record
        only, unless this update was validated anyway: the validation is appended to
        ``state.history`` with an epoch record's keys for the epoch so far (``learning_rate``:
        of its last update), plus ``step`` and ``"at_stop": True``."""
        state = self.state
        if self.validated_at == state.updates:
            return
        validation = self.validate(mid_epoch=True, at_stop=True)
        state.history.append(
            {
                "epoch": state.epoch + 1,
                "step": state.step,
                "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
                **validation.figures(),
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
