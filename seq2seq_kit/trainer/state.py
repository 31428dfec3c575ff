"""What a training run carries from one epoch, update or process to the next: the
:class:`TrainerState` saved with every checkpoint, and the records of its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The token ids of one side of a run's pairs: a sequence of ids per sentence.
Ids = Sequence[Sequence[int]]

#: Why a run stopped, as ``TrainerState.stopped`` records it: every epoch done, early
#: stopping, ``max_updates`` or ``max_time`` reached, or SIGINT/SIGTERM.
STOP_REASONS = ("epochs", "patience", "max_updates", "max_time", "interrupted")


@dataclass(frozen=True)
class Tracked:
    """A validation that counted for the best score, patience and plateaus (not one made
    only because the run stopped there), as a kept checkpoint records it.

    Attributes:
        update: updates done when it ran (``TrainerState.updates``).
        epoch: the epoch it ran in, counted from 1 (at an epoch end: the epoch ending).
        step: that epoch's batches trained on by then (all of them at an epoch end).
        score: its score, lower is better (:attr:`TrainerState.best_score`'s measure).
    """

    update: int
    epoch: int
    step: int
    score: float


@dataclass
class TrainerState:
    """Everything besides the model and its optimizer that the next epoch depends on.

    Attributes:
        epoch: epochs completed.
        rng: the shuffling generator's ``bit_generator.state`` (JSON-serialisable).
        learning_rate: the base step size: ``train.learning_rate``, reduced on plateaus;
            each update's rate is the schedule's at that update from this base.
        best_score: best validation score so far, lower is better
            (:func:`seq2seq_kit.trainer.early_stopping.selection_score` of
            ``early_stopping_metric``: the loss, minus the token accuracy, minus a decoded
            chrF, BLEU or exact match, or a decoded TER, CER or token error rate; ``inf``
            before the first validation).
        best_weights: the weights that reached it (the last weights without validation).
        best_validation: the validation that reached it: ``{"metric"`` (the
            ``early_stopping_metric``), ``"update", "epoch", "step"`` (where it was made: the
            epoch counted from 1, its batches done), ``"valid_loss", "valid_accuracy"``, a
            ``"valid_<metric>"`` per decoded metric, and ``"evaluated_on"}``; without
            validation pairs, the latest validation (of the training pairs); None before
            the first.
        bad_epochs: validations since ``best_score`` improved (early stopping); one
            validation per epoch unless ``valid_every`` > 0.
        plateau_epochs: validations since the learning rate was last reduced or
            ``best_score`` improved.
        history: one record per completed epoch, and one marked ``"at_stop": True`` for
            each stop by ``max_updates`` or ``max_time`` between validation points (see
            :func:`epoch_records`).
        validations: every validation made, in order, within epochs too: the records
            ``on_validation`` receives (``{"update", "epoch", "step", "valid_loss",
            "valid_accuracy"``, a ``"valid_<metric>"`` per decoded metric, ``"evaluated_on",
            "best", "at_stop"}``); None for a run resumed from a model saved before they were
            recorded, which records none (a list from then on would miss the earlier ones).
        step: batches of epoch ``epoch + 1`` already trained on (0 at an epoch boundary;
            more when training stopped or saved in the middle of that epoch); a multiple of
            ``accumulate`` unless it is the epoch's last batch.
        epoch_rng: the shuffling generator's state when epoch ``epoch + 1`` began, which
            replays its batch order on resumption (None at an epoch boundary).
        epoch_loss: sum over those ``step`` steps of loss times target tokens.
        epoch_tokens: target tokens of those steps.
        epoch_seconds: wall time spent on those steps.
        updates: optimizer updates taken over the whole run (the schedule's ``n - 1``).
        stopped: why training stopped (one of :data:`STOP_REASONS`), None while it runs.
        tracked: the last validation that counted (:class:`Tracked`), for the checkpoint
            a save at its update keeps; not saved (a resumed run has tracked none yet).
    """

    epoch: int = 0
    rng: dict[str, Any] | None = None
    learning_rate: float = 0.0
    best_score: float = float("inf")
    best_weights: dict[str, np.ndarray] | None = None
    best_validation: dict[str, Any] | None = None
    bad_epochs: int = 0
    plateau_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] | None = field(default_factory=list)
    step: int = 0
    epoch_rng: dict[str, Any] | None = None
    epoch_loss: float = 0.0
    epoch_tokens: float = 0.0
    epoch_seconds: float = 0.0
    updates: int = 0
    stopped: str | None = None
    tracked: Tracked | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON-able part (``best_weights`` is saved as weights, not here)."""
        return {
            "epoch": self.epoch,
            "rng": self.rng,
            "learning_rate": self.learning_rate,
            "best_score": self.best_score if np.isfinite(self.best_score) else None,
            "bad_epochs": self.bad_epochs,
            "plateau_epochs": self.plateau_epochs,
            "step": self.step,
            "epoch_rng": self.epoch_rng,
            "epoch_loss": self.epoch_loss,
            "epoch_tokens": self.epoch_tokens,
            "epoch_seconds": self.epoch_seconds,
            "updates": self.updates,
            "stopped": self.stopped,
            "best_validation": self.best_validation,
        }

    @classmethod
    def from_json(
        cls,
        data: dict[str, Any],
        history: list[dict[str, Any]],
        updates: int = 0,
        validations: list[dict[str, Any]] | None = None,
    ) -> TrainerState:
        """The state :meth:`to_json` wrote, with the run's ``history`` and ``validations``
        (None for a state saved before they were recorded); ``updates`` counts the updates
        of a state written before they were counted (the optimizer state's ``step``)."""
        # states written before early_stopping_metric existed hold a loss as best_loss
        best = data.get("best_score", data.get("best_loss"))
        return cls(
            epoch=int(data["epoch"]),
            rng=data["rng"],
            learning_rate=float(data["learning_rate"]),
            best_score=float("inf") if best is None else float(best),
            bad_epochs=int(data["bad_epochs"]),
            plateau_epochs=int(data["plateau_epochs"]),
            history=list(history),
            validations=None if validations is None else list(validations),
            # states written before mid-epoch resumption existed are at an epoch boundary
            step=int(data.get("step", 0)),
            epoch_rng=data.get("epoch_rng"),
            epoch_loss=float(data.get("epoch_loss", 0.0)),
            epoch_tokens=float(data.get("epoch_tokens", 0.0)),
            epoch_seconds=float(data.get("epoch_seconds", 0.0)),
            updates=int(data.get("updates", updates)),
            stopped=data.get("stopped"),
            # unknown in states written before it was recorded
            best_validation=_object_or_none(data.get("best_validation")),
        )


def _object_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def epoch_records(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of completed epochs in ``history``, without those of stops within an
    epoch (``"at_stop": True``)."""
    return [record for record in history if not record.get("at_stop")]


def where(state: TrainerState) -> str:
    """``epoch E step S``, where ``state`` is, for messages: epoch E (counted from 1) in
    progress, S of its batches trained on."""
    return f"epoch {state.epoch + 1} step {state.step}"
