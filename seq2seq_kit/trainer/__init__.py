"""The training loop: epochs of shuffled batches grouped into updates (gradient
accumulation), a learning rate set before every update (schedules), evaluation at epoch ends
and every ``valid_every`` updates, early stopping, learning-rate reduction on plateau,
scheduled sampling, log lines per epoch and every ``log_every`` updates, saves at epoch ends
and every ``save_every`` updates, limits in updates and wall time, a stop on SIGINT/SIGTERM
that saves first, and exact resumption, also from the middle of an epoch.

This package is where :func:`fit` and what goes with it are imported from. The loop itself
is in :mod:`.loop`; its parts, each in a module of its own, are the state a run carries
(:mod:`.state`), validation and what it decides (:mod:`.early_stopping`), the saves
(:mod:`.cadence`), the log lines (:mod:`.log`), the signal handlers (:mod:`.signals`) and
:mod:`.scheduled_sampling`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import Model
from ..batching import batches
from ..config import TrainConfig
from ..errors import TrainingError, TrainingInterrupted
from ..logs import stdout_logging
from ..runtime import ProcessGroup, SingleProcess
from .averaged import check_averaging
from .early_stopping import DecodedScores, Scoring, selection_score
from .log import log_start, quiet_unless
from .loop import Hooks, Run
from .scheduled_sampling import scheduled_sampling
from .signals import StopSignals
from .state import STOP_REASONS, Ids, TrainerState, epoch_records

__all__ = [
    "EVAL_BATCH_SIZE",
    "STOP_REASONS",
    "DecodedScores",
    "TrainerState",
    "clock",
    "epoch_records",
    "evaluate",
    "fit",
    "scheduled_sampling",
    "selection_score",
]

EVAL_BATCH_SIZE = 256

#: The wall clock ``max_time`` reads, in seconds (monotonic); replaceable for tests.
clock: Callable[[], float] = time.monotonic


def evaluate(
    model: Model, sources: Ids, targets: Ids, group: ProcessGroup | None = None
) -> tuple[float, float]:
    """Teacher-forced mean loss (nats per target token, EOS included) and token accuracy
    (argmax equals the target, over non-pad positions) of ``model`` on the pairs. With a
    data-parallel ``group``, each rank scores every ``world_size``-th pair from its rank on
    and the sums are added over the ranks, so every rank gets the same figures."""
    group = group or SingleProcess()
    if group.world_size > 1:
        mine = range(group.rank, len(sources), group.world_size)
        sources, targets = [sources[i] for i in mine], [targets[i] for i in mine]
    loss_sum = correct = count = 0.0
    for batch in batches(sources, targets, EVAL_BATCH_SIZE):
        log_probs = model.log_probs(batch)
        mask = batch.tgt_mask.astype(bool)
        gold = np.take_along_axis(log_probs, batch.tgt_out[..., None], axis=2)[..., 0]
        loss_sum -= float(gold[mask].sum())
        correct += float((log_probs.argmax(axis=2) == batch.tgt_out)[mask].sum())
        count += float(mask.sum())
    loss_sum, correct, count = group.all_reduce([loss_sum, correct, count])
    return loss_sum / max(count, 1.0), correct / max(count, 1.0)


def fit(
    model: Model,
    train: tuple[Ids, Ids],
    valid: tuple[Ids, Ids] | None,
    config: TrainConfig,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    state: TrainerState | None = None,
    save: Callable[[TrainerState], None] | None = None,
    out_dir: str | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    on_validation: Callable[[dict[str, Any]], None] | None = None,
    group: ProcessGroup | None = None,
    decoded: DecodedScores | None = None,
) -> TrainerState:
    """Train ``model`` in place up to ``config.epochs`` epochs; returns the final state.

    Updates. Each epoch's shuffled batches are taken ``config.accumulate`` at a time (the
    epoch's leftover batches make a shorter last group) and handed as one list to
    ``model.train_step``: one optimizer update each. Before every update the step size is
    set with ``model.set_learning_rate`` to the ``config.lr_schedule`` value at that update
    (:func:`seq2seq_kit.schedules.learning_rate_at`, ``d_model`` from the model's spec).

    Each epoch record has ``epoch``, ``train_loss`` (token-weighted mean over the epoch's
    updates, before each update), ``valid_loss`` and ``valid_accuracy`` (on the validation
    pairs, or on the training pairs when there are none, as ``evaluated_on`` says), with
    ``decoded`` a ``valid_<metric>`` for each score it gives (``valid_chrf``...),
    ``learning_rate`` (of the epoch's last update), ``seconds`` and ``updates`` (in all so
    far); it is also logged as one line on the ``seq2seq_kit.trainer`` logger at INFO, which
    goes to stdout, flushed, when the application configured no logging (see
    :func:`seq2seq_kit.logs.stdout_logging`). With ``config.log_every`` > 0, every that many
    updates a line gives the update, epoch, mean training loss since the previous line,
    learning rate and target tokens per second of update time, and ``on_update`` receives
    it as ``{"update", "epoch", "step", "train_loss", "learning_rate",
    "target_tokens_per_second"}``.

    Validation runs at every epoch end and, with ``config.valid_every`` > 0, after every
    that many updates (an epoch end at such an update validates once). A stop on
    ``max_updates`` or ``max_time`` at any other update also validates the weights it ends
    with, for the record only: that validation is logged, appended to ``state.history``
    with ``"at_stop": True`` (and ``epoch``, ``step``, ``train_loss`` of the epoch so far)
    and passed to ``on_validation``, but changes no patience count, learning rate, best
    score or best weights, so a run resumed from the stop repeats the uninterrupted one
    (at such a stop, as at an interrupt, the best weights are those of the validations due
    so far). ``on_validation`` receives each validation as ``{"update", "epoch", "step",
    "valid_loss", "valid_accuracy", "valid_<metric>"..., "evaluated_on", "best",
    "at_stop"}``. ``decoded(model, group)`` (:data:`DecodedScores`, built by
    :mod:`seq2seq_kit.decoded_validation` for ``config.valid_metrics``) scores the model's
    decoded outputs at each validation, on the same pairs as ``evaluate``. With validation
    pairs, "better" means a lower :func:`selection_score` of
    ``config.early_stopping_metric`` (JoeyNMT's option of that name): a lower loss, a
    higher token accuracy, chrF, BLEU or exact match, a lower TER, CER or token error rate;
    a tie is no better. ``config.patience`` > 0 stops after that
    many validations without a better one (epochs, unless ``valid_every`` > 0),
    ``config.lr_patience`` > 0 multiplies the learning rate by ``config.lr_factor`` after
    that many (Keras' ``ReduceLROnPlateau``), and the best weights are restored at the end;
    ``state.best_validation`` records the validation that chose them.

    With ``config.ema_decay`` > 0 (a model built with that ``OptimizerSpec.ema_decay``, see
    :mod:`seq2seq_kit.ema`), every validation scores the moving average of the weights,
    the best weights are the best average, and ``model`` ends with the best average (the
    last average without validation pairs); training itself goes on from the weights.

    Training stops after ``config.epochs`` epochs, on early stopping, after
    ``config.max_updates`` updates in all, or after the update that ends
    ``config.max_time`` seconds of this call (read from :data:`clock`); the reason is
    ``state.stopped``.

    ``state`` resumes from a saved :class:`TrainerState` (weights and optimizer state
    already restored in ``model``); ``save(state)`` is called when training stops, after
    any epoch that ends ``config.save_seconds`` or more after the previous save, every
    ``config.save_every`` updates (in the middle of an epoch too), and with
    ``config.keep_last`` or ``keep_best`` > 0 after every validation that counts (not one
    made only at a stop), with ``state.tracked`` saying which: ``save`` keeps a checkpoint
    of it. ``out_dir`` is where
    ``save`` writes, named in messages. Resumed training repeats uninterrupted training
    exactly for a deterministic backend, also from a state saved in the middle of an epoch.

    Data-parallel training (a ``group`` of more than one process, and ``model`` built with
    it): ``config.batch_size`` is per rank. Every rank draws the same shuffled plan of
    batches of ``batch_size * world_size`` and trains on its part of each
    (:func:`seq2seq_kit.batching.shards`); ``model.train_step`` sums the gradients over the
    ranks, so the updates are those of one process with the whole batches. The loss, the
    validation sums, a received SIGINT/SIGTERM and ``max_time`` are added up over the ranks
    at every update, so all ranks take the same decisions (early stopping, learning rate,
    stops); ``decoded`` must give every rank the same scores (each rank decodes its share
    and the metrics' counts are summed). Only rank 0 should be given ``save`` and the
    callbacks; the other ranks log only warnings and show no progress bar.

    Raises:
        ValueError: ``config.early_stopping_metric`` is a decoded metric and no ``decoded``
            is given.
        TrainingError: a non-finite training loss (naming epoch and step), validation loss
            or weight, raised before anything non-finite is saved, so the last checkpoint
            stays as it was; or, in data-parallel training, a collective operation that
            failed because another rank failed or stopped (naming the ranks found gone).
        TrainingInterrupted: SIGINT or SIGTERM (handled only while this runs in the main
            thread) stopped training after the current update and after ``save(state)``.
        TypeError: ``config.ema_decay`` > 0 and ``model`` keeps no moving average.
    """
    if config.early_stopping_metric not in ("loss", "accuracy") and decoded is None:
        raise ValueError(
            f"train.early_stopping_metric = {config.early_stopping_metric!r} is a decoded "
            f"metric: fit needs decoded= to score it (seq2seq_kit.decoded_validation)"
        )
    check_averaging(model, config.ema_decay)
    group = group or SingleProcess()
    state = state or TrainerState(learning_rate=config.learning_rate)
    state.stopped = None
    has_valid = bool(valid and len(valid[0]))
    scoring = Scoring(valid if has_valid else train, has_valid, evaluate, decoded)
    hooks = Hooks(on_epoch_end, on_update, on_validation, save, out_dir)
    with stdout_logging(), quiet_unless(group.rank == 0), StopSignals() as signals:
        run = Run(model, config, state, scoring, hooks, signals, group, clock)
        log_start(config, state, run.d_model)
        try:
            run.epochs(train)
        except (TrainingError, TrainingInterrupted):
            raise
        except Exception as exc:
            if group.world_size == 1:
                raise
            raise run.failure(exc) from exc
    if state.best_weights is not None and has_valid:
        model.set_weights(state.best_weights)
    elif config.ema_decay:  # the model a run keeps is the average
        model.set_weights(model.ema_weights())
    return state
