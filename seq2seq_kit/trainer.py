"""The training loop: epochs of shuffled batches, per-epoch evaluation, early stopping,
learning-rate reduction on plateau, scheduled sampling, and exact resumption."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .backend import Model
from .batching import Batch, batches
from .config import TrainConfig

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
    """

    epoch: int = 0
    rng: dict[str, Any] | None = None
    learning_rate: float = 0.0
    best_score: float = float("inf")
    best_weights: dict[str, np.ndarray] | None = None
    bad_epochs: int = 0
    plateau_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON-able part (``best_weights`` is saved as weights, not here)."""
        return {
            "epoch": self.epoch,
            "rng": self.rng,
            "learning_rate": self.learning_rate,
            "best_score": self.best_score if np.isfinite(self.best_score) else None,
            "bad_epochs": self.bad_epochs,
            "plateau_epochs": self.plateau_epochs,
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


def fit(
    model: Model,
    train: tuple[Ids, Ids],
    valid: tuple[Ids, Ids] | None,
    config: TrainConfig,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    state: TrainerState | None = None,
    save: Callable[[TrainerState], None] | None = None,
) -> TrainerState:
    """Train ``model`` in place up to ``config.epochs`` epochs; returns the final state.

    Each epoch record has ``epoch``, ``train_loss`` (token-weighted mean over the epoch's
    steps, before each update), ``valid_loss`` and ``valid_accuracy`` (on the validation
    pairs, or on the training pairs when there are none, as ``evaluated_on`` says),
    ``learning_rate`` and ``seconds``. With validation pairs, "better" means a lower
    validation loss, or a higher validation token accuracy with
    ``config.early_stopping_metric = "accuracy"`` (JoeyNMT's option of that name):
    ``config.patience`` > 0 stops after that many epochs without a better one,
    ``config.lr_patience`` > 0 multiplies the learning rate by ``config.lr_factor`` after
    that many (Keras' ``ReduceLROnPlateau``), and the best weights are restored at the end.

    ``state`` resumes from a saved :class:`TrainerState` (weights and optimizer state
    already restored in ``model``); ``save(state)`` is called after the last epoch and after
    any epoch that ends ``config.save_seconds`` or more after the previous save. Resumed
    training repeats uninterrupted training exactly for a deterministic backend.
    """
    from tqdm.auto import tqdm

    state = state or TrainerState(learning_rate=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    model.set_learning_rate(state.learning_rate)
    has_valid = bool(valid and len(valid[0]))
    last_save = time.perf_counter()
    eval_src, eval_tgt = valid if has_valid else train
    bar = tqdm(
        range(state.epoch + 1, config.epochs + 1),
        desc="train",
        unit="epoch",
        initial=state.epoch,
        total=config.epochs,
        disable=None if config.progress else True,
    )
    for epoch in bar:
        start = time.perf_counter()
        loss_sum = tokens = 0.0
        for batch in batches(*train, config.batch_size, rng=rng, bucket=config.bucket):
            if config.teacher_forcing < 1.0:
                batch = scheduled_sampling(model, batch, config.teacher_forcing, rng)
            n = batch.num_target_tokens
            loss_sum += model.train_step(batch) * n
            tokens += n
        valid_loss, valid_acc = evaluate(model, eval_src, eval_tgt)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(tokens, 1.0),
            "valid_loss": valid_loss,
            "valid_accuracy": valid_acc,
            "evaluated_on": "valid" if has_valid else "train",
            "learning_rate": state.learning_rate,
            "seconds": time.perf_counter() - start,
        }
        state.history.append(record)
        state.epoch = epoch
        bar.set_postfix(
            loss=f"{record['train_loss']:.4f}",
            val=f"{valid_loss:.4f}",
            acc=f"{valid_acc:.3f}",
            refresh=False,
        )
        score = valid_loss if config.early_stopping_metric == "loss" else -valid_acc
        stop = _track_best(model, state, config, score, has_valid)
        if stop:
            record["early_stopped"] = True
        state.rng = rng.bit_generator.state
        if on_epoch_end is not None:
            on_epoch_end(record)
        if save is not None and (
            stop or epoch == config.epochs or time.perf_counter() - last_save >= config.save_seconds
        ):
            save(state)
            last_save = time.perf_counter()
        if stop:
            break
    bar.close()
    if state.best_weights is not None and has_valid:
        model.set_weights(state.best_weights)
    return state


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
