"""The training loop's log lines: how a run starts, one line per epoch (at most one per
``log_seconds``), one every ``log_every`` updates, one per validation within an epoch, and
why a run stops."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..config import TrainConfig
from ..metrics import LABELS, METRICS, PERCENT
from ..schedules import learning_rate_at
from .state import TrainerState

# fit documents its lines as the seq2seq_kit.trainer logger's, and quiet_unless sets that
# logger's level: every line of the loop goes there, whichever module writes it
log = logging.getLogger("seq2seq_kit.trainer")


@contextlib.contextmanager
def quiet_unless(speaking: bool) -> Iterator[None]:
    """Log only warnings and errors from the trainer while not ``speaking`` (the ranks
    other than 0 of a data-parallel run, which train the same updates)."""
    if speaking:
        yield
        return
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def log_start(config: TrainConfig, state: TrainerState, d_model: int) -> None:
    """The lines before the first update: the peak step size of a schedule or warm-up
    (``d_model``: the noam schedule's), and where a resumed run goes on from."""
    if config.lr_schedule != "constant" or config.warmup_steps:
        # a schedule's factor is easy to get wrong by orders of magnitude (noam's is
        # about 1, not a step size): say what it gives before training on it
        warmup = max(config.warmup_steps, 1)
        log.info(
            "learning rate: %s schedule, %.3g at update %d (the peak, after warm-up)",
            config.lr_schedule,
            learning_rate_at(
                config.lr_schedule,
                warmup,
                config.learning_rate,
                warmup_steps=config.warmup_steps,
                d_model=d_model,
            ),
            warmup,
        )
    if state.step:
        log.info("resuming at epoch %d step %d", state.epoch + 1, state.step)
    elif state.epoch:
        log.info("resuming after epoch %d", state.epoch)


class EpochLines:
    """The line of an epoch record: the first of a run, each one a run stops at, and
    otherwise at most one per ``every_seconds``."""

    def __init__(self, epochs: int, every_seconds: float):
        self.epochs, self.every_seconds = epochs, every_seconds
        self.last_time: float | None = None  # the first epoch of a run is always logged

    def write(self, record: dict[str, Any], stopping: bool) -> None:
        """Log ``record`` (an epoch record of the history) if its line is due."""
        now = time.perf_counter()
        due = self.last_time is None or now - self.last_time >= self.every_seconds
        if not (due or stopping):
            return
        self.last_time = now
        where = "valid" if record["evaluated_on"] == "valid" else "train-set"
        log.info(
            "epoch %d/%d: train loss %.4f; %s loss %.4f, accuracy %.3f%s; learning rate %.3g; "
            "%.2f s",
            record["epoch"],
            self.epochs,
            record["train_loss"],
            where,
            record["valid_loss"],
            record["valid_accuracy"],
            decoded_figures(record),
            record["learning_rate"],
            record["seconds"],
        )


def decoded_figures(record: dict[str, Any]) -> str:
    """The decoded metrics of a validation or epoch ``record`` (its ``valid_<metric>``
    keys) for a log line: ``"; chrF 45.12, BLEU 20.10, exact match 0.3120"`` (chrF, BLEU
    and TER 0..100, the others 0..1), or ``""`` when it has none."""
    shown = [
        f"{LABELS[name]} {record[f'valid_{name}']:.{2 if name in PERCENT else 4}f}"
        for name in METRICS
        if f"valid_{name}" in record
    ]
    return f"; {', '.join(shown)}" if shown else ""


class UpdateLines:
    """Every ``log_every`` updates, a line of the updates since the previous line, also
    passed to ``on_update``."""

    def __init__(self, on_update: Callable[[dict[str, Any]], None] | None):
        self.on_update = on_update
        # since the last line: loss x tokens, target tokens, seconds of updates
        self.meter = [0.0, 0.0, 0.0]

    def add(self, loss: float, tokens: float, seconds: float) -> None:
        """Count an update: its mean loss per target token, its target tokens over all
        ranks and its wall time."""
        loss_sum, token_sum, time_sum = self.meter
        self.meter = [loss_sum + loss * tokens, token_sum + tokens, time_sum + seconds]

    def write(self, state: TrainerState, rate: float) -> None:
        """The line after the update ``state`` has just counted (``rate``: its step size):
        ``{"update", "epoch", "step", "train_loss", "learning_rate",
        "target_tokens_per_second"}``, logged and passed to ``on_update``."""
        loss_sum, tokens, seconds = self.meter
        record = {
            "update": state.updates,
            "epoch": state.epoch + 1,
            "step": state.step,
            "train_loss": loss_sum / max(tokens, 1.0),
            "learning_rate": rate,
            "target_tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        }
        self.meter = [0.0, 0.0, 0.0]
        log.info(
            "update %d (epoch %d): train loss %.4f; learning rate %.3g; %.0f target tokens/s",
            record["update"],
            record["epoch"],
            record["train_loss"],
            record["learning_rate"],
            record["target_tokens_per_second"],
        )
        if self.on_update is not None:
            self.on_update(record)


def log_validation(
    state: TrainerState,
    figures: dict[str, float],
    has_valid: bool,
    at_stop: bool,
    decode_seconds: float,
) -> None:
    """The line of a validation within an epoch: ``figures`` as a record holds them
    (``valid_loss`` in nats per target token, ``valid_accuracy`` a fraction, any decoded
    metric's ``valid_<metric>``, which took ``decode_seconds`` to decode and score), on the
    validation pairs (``has_valid``) or the training pairs."""
    decoded = decoded_figures(figures)
    log.info(
        "update %d (epoch %d step %d): %s loss %.4f, accuracy %.3f%s%s",
        state.updates,
        state.epoch + 1,
        state.step,
        "valid" if has_valid else "train-set",
        figures["valid_loss"],
        figures["valid_accuracy"],
        f"{decoded} (decoded in {decode_seconds:.1f} s)" if decoded else "",
        " (at the stop: not counted for patience, learning rate or best weights)"
        if at_stop
        else "",
    )


def log_stop(reason: str, state: TrainerState, valid_every: int) -> None:
    """Why a run stops, for a limit or early stopping (``reason`` as
    ``TrainerState.stopped`` records it; with ``valid_every`` 0, patience counts epochs)."""
    if reason in ("max_updates", "max_time"):
        log.info("stopping: %s reached after %d updates", reason, state.updates)
    elif reason == "patience":
        log.info(
            "early stopping: %d %s without a better score",
            state.bad_epochs,
            "validations" if valid_every else "epochs",
        )
