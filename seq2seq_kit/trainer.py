"""The training loop: epochs of shuffled batches, per-epoch evaluation, early stopping,
learning-rate reduction on plateau, scheduled sampling, one log line per epoch, a stop on
SIGINT/SIGTERM that saves first, and exact resumption, also from the middle of an epoch."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

import numpy as np

from .backend import Model
from .batching import Batch, batches
from .config import TrainConfig
from .errors import TrainingError, TrainingInterrupted
from .logs import stdout_logging

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 256

Ids = Sequence[Sequence[int]]


@dataclass
class TrainerState:
    """Everything besides the model and its optimizer that the next epoch depends on.

    Attributes:
        epoch: epochs completed.
        rng: the shuffling generator's ``bit_generator.state`` (JSON-serialisable).
        learning_rate: the current step size (reduced on plateaus).
        best_score: best validation score so far, lower is better: the loss, or minus the
            token accuracy with ``early_stopping_metric = "accuracy"`` (``inf`` before the
            first epoch).
        best_weights: the weights that reached it (the last weights without validation).
        bad_epochs: epochs since ``best_score`` improved (early stopping).
        plateau_epochs: epochs since the learning rate was last reduced or ``best_score``
            improved.
        history: one record per completed epoch.
        step: steps of epoch ``epoch + 1`` already taken (0 at an epoch boundary; more
            when training was interrupted in the middle of that epoch).
        epoch_rng: the shuffling generator's state when epoch ``epoch + 1`` began, which
            replays its batch order on resumption (None at an epoch boundary).
        epoch_loss: sum over those ``step`` steps of loss times target tokens.
        epoch_tokens: target tokens of those steps.
        epoch_seconds: wall time spent on those steps.
    """

    epoch: int = 0
    rng: dict[str, Any] | None = None
    learning_rate: float = 0.0
    best_score: float = float("inf")
    best_weights: dict[str, np.ndarray] | None = None
    bad_epochs: int = 0
    plateau_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    epoch_rng: dict[str, Any] | None = None
    epoch_loss: float = 0.0
    epoch_tokens: float = 0.0
    epoch_seconds: float = 0.0

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
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], history: list[dict[str, Any]]) -> TrainerState:
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
            # states written before mid-epoch resumption existed are at an epoch boundary
            step=int(data.get("step", 0)),
            epoch_rng=data.get("epoch_rng"),
            epoch_loss=float(data.get("epoch_loss", 0.0)),
            epoch_tokens=float(data.get("epoch_tokens", 0.0)),
            epoch_seconds=float(data.get("epoch_seconds", 0.0)),
        )


def evaluate(model: Model, sources: Ids, targets: Ids) -> tuple[float, float]:
    """Teacher-forced mean loss (nats per target token, EOS included) and token accuracy
    (argmax equals the target, over non-pad positions) of ``model`` on the pairs."""
    loss_sum = correct = count = 0.0
    for batch in batches(sources, targets, EVAL_BATCH_SIZE):
        log_probs = model.log_probs(batch)
        mask = batch.tgt_mask.astype(bool)
        gold = np.take_along_axis(log_probs, batch.tgt_out[..., None], axis=2)[..., 0]
        loss_sum -= float(gold[mask].sum())
        correct += float((log_probs.argmax(axis=2) == batch.tgt_out)[mask].sum())
        count += float(mask.sum())
    return loss_sum / max(count, 1.0), correct / max(count, 1.0)


def scheduled_sampling(model: Model, batch: Batch, ratio: float, rng: np.random.Generator) -> Batch:
    """Replace each decoder input after BOS, with probability ``1 - ratio``, by the model's
    own greedy prediction for that position (the teacher-forcing ratio; Bengio et al. 2015,
    computed from one teacher-forced pass as in Duckworth et al. 2019, so every backend
    gets it through ``log_probs`` alone)."""
    predicted = model.log_probs(batch).argmax(axis=2).astype(np.int32)
    swap = rng.random(batch.tgt_in.shape) >= ratio
    swap[:, 0] = False  # BOS stays
    swap &= batch.tgt_mask.astype(bool)
    tgt_in = batch.tgt_in.copy()
    # position t reads the prediction made at t - 1
    tgt_in[:, 1:][swap[:, 1:]] = predicted[:, :-1][swap[:, 1:]]
    return replace(batch, tgt_in=tgt_in)


class _StopSignals:
    """SIGINT and SIGTERM handlers for the time training runs (main thread only: Python
    takes handlers nowhere else; a signal the parent process ignores, as shells do for
    SIGINT in background jobs, stays ignored). The first signal asks the loop to stop after
    the current step; a second SIGINT raises ``KeyboardInterrupt`` at once, for a step that
    hangs.

    Attributes:
        received: the number of the first signal received, or None.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM"):
                number = getattr(signal, name, None)
                if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self.handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, previous in self._previous.items():
            # None: a handler not set from Python, which Python cannot reinstall
            signal.signal(number, signal.SIG_DFL if previous is None else previous)

    def handle(self, number: int, frame: FrameType | None = None) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = number


class _Checkpoints:
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
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of this run's last save

    def due(self) -> bool:
        return time.perf_counter() - self.last_time >= self.every_seconds

    def write(self, model: Model, state: TrainerState, where: str) -> None:
        if self.save is None or self.saved_at == (state.epoch, state.step):
            return
        bad = [name for name, w in model.get_weights().items() if not np.isfinite(w).all()]
        if bad:
            raise TrainingError(
                f"{where}: the weights hold non-finite values ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); training stopped and {self.kept()}"
            )
        self.save(state)
        self.last_time = time.perf_counter()
        self.saved_at = (state.epoch, state.step)

    def kept(self) -> str:
        """What a run that stops now leaves behind, e.g. for a non-finite loss."""
        if self.save is None:
            return "nothing was saved (no output directory)"
        where = self.out_dir or "the model directory"
        if self.saved_at is None:
            return f"nothing was written to {where}"
        return f"{where} keeps the checkpoint written after epoch {self.saved_at[0]}"

    def interrupted(self, epoch: int, step: int) -> str:
        said = f"interrupted at epoch {epoch} step {step}"
        if self.save is None:
            return f"{said}; nothing was saved (no output directory)"
        if self.out_dir is None:
            return f"{said}; saved"
        return f"{said}; saved to {self.out_dir}; continue with --resume {self.out_dir}"


def fit(
    model: Model,
    train: tuple[Ids, Ids],
    valid: tuple[Ids, Ids] | None,
    config: TrainConfig,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    state: TrainerState | None = None,
    save: Callable[[TrainerState], None] | None = None,
    out_dir: str | None = None,
) -> TrainerState:
    """Train ``model`` in place up to ``config.epochs`` epochs; returns the final state.

    Each epoch record has ``epoch``, ``train_loss`` (token-weighted mean over the epoch's
    steps, before each update), ``valid_loss`` and ``valid_accuracy`` (on the validation
    pairs, or on the training pairs when there are none, as ``evaluated_on`` says),
    ``learning_rate`` and ``seconds``; it is also logged as one line on the
    ``seq2seq_kit.trainer`` logger at INFO, which goes to stdout, flushed, when the
    application configured no logging (see :func:`seq2seq_kit.logs.stdout_logging`).
    With validation pairs, "better" means a lower
    validation loss, or a higher validation token accuracy with
    ``config.early_stopping_metric = "accuracy"`` (JoeyNMT's option of that name):
    ``config.patience`` > 0 stops after that many epochs without a better one,
    ``config.lr_patience`` > 0 multiplies the learning rate by ``config.lr_factor`` after
    that many (Keras' ``ReduceLROnPlateau``), and the best weights are restored at the end.

    ``state`` resumes from a saved :class:`TrainerState` (weights and optimizer state
    already restored in ``model``); ``save(state)`` is called after the last epoch and after
    any epoch that ends ``config.save_seconds`` or more after the previous save.
    ``out_dir`` is where ``save`` writes, named in messages. Resumed training repeats
    uninterrupted training exactly for a deterministic backend, also from a state saved in
    the middle of an epoch.

    Raises:
        TrainingError: a non-finite training loss (naming epoch and step), validation loss
            or weight; raised before anything non-finite is saved, so the last checkpoint
            stays as it was.
        TrainingInterrupted: SIGINT or SIGTERM (handled only while this runs in the main
            thread) stopped training after the current step and after ``save(state)``.
    """
    from tqdm.auto import tqdm

    state = state or TrainerState(learning_rate=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    model.set_learning_rate(state.learning_rate)
    has_valid = bool(valid and len(valid[0]))
    eval_src, eval_tgt = valid if has_valid else train
    checkpoints = _Checkpoints(save, out_dir, config.save_seconds)
    last_log: float | None = None  # the first epoch of a run is always logged
    with stdout_logging(), _StopSignals() as signals:
        if state.step:
            log.info("resuming at epoch %d step %d", state.epoch + 1, state.step)
        elif state.epoch:
            log.info("resuming after epoch %d", state.epoch)
        bar = tqdm(
            desc="train",
            unit="epoch",
            initial=state.epoch,
            total=config.epochs,
            disable=None if config.progress else True,
        )
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                if not _train_epoch(model, train, config, rng, state, signals, checkpoints):
                    state.rng = rng.bit_generator.state
                    checkpoints.write(model, state, f"epoch {epoch} step {state.step}")
                    raise TrainingInterrupted(
                        checkpoints.interrupted(epoch, state.step), signals.received
                    )
                steps, start = state.step, time.perf_counter()
                valid_loss, valid_acc = evaluate(model, eval_src, eval_tgt)
                state.epoch_seconds += time.perf_counter() - start
                if not math.isfinite(valid_loss):
                    on = "validation" if has_valid else "training-set"
                    raise TrainingError(
                        f"epoch {epoch} step {steps}: the {on} loss is {valid_loss} (not "
                        f"finite); training stopped and {checkpoints.kept()}"
                    )
                record = _end_epoch(state, epoch, valid_loss, valid_acc, has_valid, rng)
                bar.set_postfix(
                    loss=f"{record['train_loss']:.4f}",
                    val=f"{valid_loss:.4f}",
                    acc=f"{valid_acc:.3f}",
                    refresh=False,
                )
                bar.update(1)
                score = valid_loss if config.early_stopping_metric == "loss" else -valid_acc
                stop = _track_best(model, state, config, score, has_valid)
                now = time.perf_counter()
                if (
                    last_log is None
                    or stop
                    or epoch == config.epochs
                    or now - last_log >= config.log_seconds
                ):
                    _log_epoch(record, config.epochs)
                    last_log = now
                if stop:
                    record["early_stopped"] = True
                    log.info("early stopping: %d epochs without a better score", state.bad_epochs)
                if on_epoch_end is not None:
                    on_epoch_end(record)
                if stop or epoch == config.epochs or checkpoints.due():
                    checkpoints.write(model, state, f"epoch {epoch} step {steps}")
                if signals.received is not None:  # arrived during the evaluation
                    checkpoints.write(model, state, f"epoch {epoch} step {steps}")
                    raise TrainingInterrupted(
                        checkpoints.interrupted(epoch, steps), signals.received
                    )
                if stop:
                    break
        finally:
            bar.close()
    if state.best_weights is not None and has_valid:
        model.set_weights(state.best_weights)
    return state


def _train_epoch(
    model: Model,
    train: tuple[Ids, Ids],
    config: TrainConfig,
    rng: np.random.Generator,
    state: TrainerState,
    signals: _StopSignals,
    checkpoints: _Checkpoints,
) -> bool:
    """Take the steps of epoch ``state.epoch + 1`` not yet taken, adding them up in
    ``state``; False when a signal stopped it after ``state.step`` steps."""
    epoch, done = state.epoch + 1, state.step
    if done:
        # replay the epoch's shuffle from its start, then go on from where it stopped
        resumed = rng.bit_generator.state
        rng.bit_generator.state = state.epoch_rng
    else:
        state.epoch_rng = rng.bit_generator.state
        state.epoch_loss = state.epoch_tokens = state.epoch_seconds = 0.0
    start = time.perf_counter()
    try:
        for step, batch in enumerate(
            batches(
                *train,
                config.batch_size,
                rng=rng,
                bucket=config.bucket,
                batch_type=config.batch_type,
            ),
            start=1,
        ):
            if step <= done:
                if step == done:
                    rng.bit_generator.state = resumed
                continue
            if config.teacher_forcing < 1.0:
                batch = scheduled_sampling(model, batch, config.teacher_forcing, rng)
            loss = model.train_step(batch)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"epoch {epoch} step {step}: the training loss is {loss} (not finite; "
                    f"learning rate {state.learning_rate:g}); training stopped and "
                    f"{checkpoints.kept()}"
                )
            n = batch.num_target_tokens
            state.epoch_loss += loss * n
            state.epoch_tokens += n
            state.step = step
            if signals.received is not None:
                return False
    finally:
        state.epoch_seconds += time.perf_counter() - start
    return True


def _end_epoch(
    state: TrainerState,
    epoch: int,
    valid_loss: float,
    valid_acc: float,
    has_valid: bool,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Append the record of the epoch just trained and evaluated; back to a boundary."""
    record = {
        "epoch": epoch,
        "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
        "valid_loss": valid_loss,
        "valid_accuracy": valid_acc,
        "evaluated_on": "valid" if has_valid else "train",
        "learning_rate": state.learning_rate,
        "seconds": state.epoch_seconds,
    }
    state.history.append(record)
    state.epoch, state.step, state.epoch_rng = epoch, 0, None
    state.epoch_loss = state.epoch_tokens = state.epoch_seconds = 0.0
    state.rng = rng.bit_generator.state
    return record


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    where = "valid" if record["evaluated_on"] == "valid" else "train-set"
    log.info(
        "epoch %d/%d: train loss %.4f; %s loss %.4f, accuracy %.3f; learning rate %.3g; %.2f s",
        record["epoch"],
        epochs,
        record["train_loss"],
        where,
        record["valid_loss"],
        record["valid_accuracy"],
        record["learning_rate"],
        record["seconds"],
    )


def _track_best(
    model: Model, state: TrainerState, config: TrainConfig, score: float, has_valid: bool
) -> bool:
    """Update best weights, early stopping and the plateau schedule from this epoch's
    ``score`` (lower is better); True means stop."""
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
