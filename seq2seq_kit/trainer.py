"""The training loop: epochs of shuffled batches grouped into updates (gradient
accumulation), a learning rate set before every update (schedules), evaluation at epoch ends
and every ``valid_every`` updates, early stopping, learning-rate reduction on plateau,
scheduled sampling, log lines per epoch and every ``log_every`` updates, saves at epoch ends
and every ``save_every`` updates, limits in updates and wall time, a stop on SIGINT/SIGTERM
that saves first, and exact resumption, also from the middle of an epoch."""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .backend import Model
from .batching import Batch, batches, shards
from .checkpoint_cadence import Checkpoints
from .config import TrainConfig
from .early_stopping import track_best
from .errors import TrainingError, TrainingInterrupted
from .logs import stdout_logging
from .runtime import ProcessGroup, SingleProcess
from .schedules import learning_rate_at, model_width
from .stop_signals import StopSignals
from .train_log import EpochLines, UpdateLines, log_start, log_stop, log_validation, quiet_unless
from .trainer_state import STOP_REASONS, TrainerState, epoch_records

__all__ = [
    "EVAL_BATCH_SIZE",
    "STOP_REASONS",
    "TrainerState",
    "clock",
    "epoch_records",
    "evaluate",
    "fit",
    "scheduled_sampling",
]

EVAL_BATCH_SIZE = 256

Ids = Sequence[Sequence[int]]

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
    out_dir: str | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    on_validation: Callable[[dict[str, Any]], None] | None = None,
    group: ProcessGroup | None = None,
) -> TrainerState:
    """Train ``model`` in place up to ``config.epochs`` epochs; returns the final state.

    Updates. Each epoch's shuffled batches are taken ``config.accumulate`` at a time (the
    epoch's leftover batches make a shorter last group) and handed as one list to
    ``model.train_step``: one optimizer update each. Before every update the step size is
    set with ``model.set_learning_rate`` to the ``config.lr_schedule`` value at that update
    (:func:`seq2seq_kit.schedules.learning_rate_at`, ``d_model`` from the model's spec).

    Each epoch record has ``epoch``, ``train_loss`` (token-weighted mean over the epoch's
    updates, before each update), ``valid_loss`` and ``valid_accuracy`` (on the validation
    pairs, or on the training pairs when there are none, as ``evaluated_on`` says),
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
    "valid_loss", "valid_accuracy", "evaluated_on", "best", "at_stop"}``. With validation
    pairs, "better" means a lower validation
    loss, or a higher validation token accuracy with ``config.early_stopping_metric =
    "accuracy"`` (JoeyNMT's option of that name): ``config.patience`` > 0 stops after that
    many validations without a better one (epochs, unless ``valid_every`` > 0),
    ``config.lr_patience`` > 0 multiplies the learning rate by ``config.lr_factor`` after
    that many (Keras' ``ReduceLROnPlateau``), and the best weights are restored at the end.

    Training stops after ``config.epochs`` epochs, on early stopping, after
    ``config.max_updates`` updates in all, or after the update that ends
    ``config.max_time`` seconds of this call (read from :data:`clock`); the reason is
    ``state.stopped``.

    ``state`` resumes from a saved :class:`TrainerState` (weights and optimizer state
    already restored in ``model``); ``save(state)`` is called when training stops, after
    any epoch that ends ``config.save_seconds`` or more after the previous save, and every
    ``config.save_every`` updates (in the middle of an epoch too). ``out_dir`` is where
    ``save`` writes, named in messages. Resumed training repeats uninterrupted training
    exactly for a deterministic backend, also from a state saved in the middle of an epoch.

    Data-parallel training (a ``group`` of more than one process, and ``model`` built with
    it): ``config.batch_size`` is per rank. Every rank draws the same shuffled plan of
    batches of ``batch_size * world_size`` and trains on its part of each
    (:func:`seq2seq_kit.batching.shards`); ``model.train_step`` sums the gradients over the
    ranks, so the updates are those of one process with the whole batches. The loss, the
    validation sums, a received SIGINT/SIGTERM and ``max_time`` are added up over the ranks
    at every update, so all ranks take the same decisions (early stopping, learning rate,
    stops). Only rank 0 should be given ``save`` and the callbacks; the other ranks log
    only warnings and show no progress bar.

    Raises:
        TrainingError: a non-finite training loss (naming epoch and step), validation loss
            or weight, raised before anything non-finite is saved, so the last checkpoint
            stays as it was; or, in data-parallel training, a collective operation that
            failed because another rank failed or stopped (naming the ranks found gone).
        TrainingInterrupted: SIGINT or SIGTERM (handled only while this runs in the main
            thread) stopped training after the current update and after ``save(state)``.
    """
    from tqdm.auto import tqdm

    group = group or SingleProcess()
    state = state or TrainerState(learning_rate=config.learning_rate)
    state.stopped = None
    rng = np.random.default_rng(config.seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    has_valid = bool(valid and len(valid[0]))
    checkpoints = Checkpoints(save, out_dir, config.save_seconds)
    epoch_lines = EpochLines(config.epochs, config.log_seconds)
    with stdout_logging(), quiet_unless(group.rank == 0), StopSignals() as signals:
        run = _Run(
            model,
            config,
            state,
            rng,
            (valid if has_valid else train, has_valid),
            signals,
            checkpoints,
            (on_update, on_validation),
            group,
        )
        log_start(config, state, run.d_model)
        bar = tqdm(
            desc="train",
            unit="epoch",
            initial=state.epoch,
            total=config.epochs,
            disable=None if config.progress and group.rank == 0 else True,
        )
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                stop = run.train_epoch(train)
                if stop is not None:  # in the middle of the epoch
                    run.stop(stop)
                    break
                steps, rate = state.step, run.rate()  # before a plateau cut
                valid_loss, valid_acc, patience_out = run.validation()
                run.vote()  # a signal or the deadline during the evaluation, on any rank
                record = _end_epoch(state, epoch, (valid_loss, valid_acc), has_valid, rate, rng)
                bar.set_postfix(
                    loss=f"{record['train_loss']:.4f}",
                    val=f"{valid_loss:.4f}",
                    acc=f"{valid_acc:.3f}",
                    refresh=False,
                )
                bar.update(1)
                stop = "patience" if patience_out else run.limit_reached()
                if stop is None and epoch == config.epochs:
                    stop = "epochs"
                epoch_lines.write(record, stopping=bool(stop))
                if stop == "patience":
                    record["early_stopped"] = True
                if stop is not None:
                    log_stop(stop, state, config.valid_every)
                if on_epoch_end is not None:
                    on_epoch_end(record)
                state.stopped = stop
                if stop or checkpoints.due() or run.save_due():
                    checkpoints.write(model, state, f"epoch {epoch} step {steps}")
                if run.signalled:  # arrived during the evaluation
                    state.stopped = "interrupted"
                    checkpoints.write(model, state, f"epoch {epoch} step {steps}")
                    raise TrainingInterrupted(checkpoints.interrupted(epoch, steps), run.signal)
                if stop:
                    break
        except (TrainingError, TrainingInterrupted):
            raise
        except Exception as exc:
            if group.world_size == 1:
                raise
            raise run.failure(exc) from exc
        finally:
            bar.close()
    if state.best_weights is not None and has_valid:
        model.set_weights(state.best_weights)
    return state


def _groups(items: Iterator[Any], size: int) -> Iterator[tuple[list[Any], bool]]:
    """``items`` in consecutive lists of ``size`` (the last one shorter when they run out),
    each with whether it is the last (known by reading the next list ahead)."""
    group = list(itertools.islice(items, size))
    while group:
        following = list(itertools.islice(items, size))
        yield group, not following
        group = following


class _Run:
    """One call of :func:`fit`: takes updates, validates, logs and saves between epoch ends."""

    def __init__(
        self,
        model: Model,
        config: TrainConfig,
        state: TrainerState,
        rng: np.random.Generator,
        evaluation: tuple[tuple[Ids, Ids], bool],
        signals: StopSignals,
        checkpoints: Checkpoints,
        callbacks: tuple[
            Callable[[dict[str, Any]], None] | None, Callable[[dict[str, Any]], None] | None
        ],
        group: ProcessGroup,
    ):
        self.model, self.config, self.state, self.rng = model, config, state, rng
        self.group = group
        # whether any rank received SIGINT/SIGTERM, or reached max_time, at the last vote
        self.signalled = self.time_up = False
        (self.eval_pairs, self.has_valid) = evaluation
        self.signals, self.checkpoints = signals, checkpoints
        on_update, self.on_validation = callbacks
        self.update_lines = UpdateLines(on_update)
        self.d_model = model_width(model.spec)
        self.deadline = clock() + config.max_time if config.max_time else None
        self.validated_at: int | None = None  # update count of the last validation
        self.last_validation: tuple[float, float, bool] = (math.nan, math.nan, False)

    def rate(self, update: int | None = None) -> float:
        """The step size of ``update`` (default: the last one taken, or the first)."""
        n = max(self.state.updates if update is None else update, 1)
        return learning_rate_at(
            self.config.lr_schedule,
            n,
            self.state.learning_rate,
            warmup_steps=self.config.warmup_steps,
            d_model=self.d_model,
        )

    def train_epoch(self, train: tuple[Ids, Ids]) -> str | None:
        """Take the updates of epoch ``state.epoch + 1`` not yet taken, adding them up in
        ``state``; None when the epoch is done, else why training stops in its middle
        (after the stop's validation; the caller saves)."""
        config, state, rng = self.config, self.state, self.rng
        done = state.step
        if done:
            # replay the epoch's shuffle from its start, then go on from where it stopped
            resumed = rng.bit_generator.state
            rng.bit_generator.state = state.epoch_rng
        else:
            state.epoch_rng = rng.bit_generator.state
            state.epoch_loss = state.epoch_tokens = state.epoch_seconds = 0.0
        numbered = enumerate(
            shards(
                *train,
                config.batch_size,
                rank=self.group.rank,
                world_size=self.group.world_size,
                rng=rng,
                bucket=config.bucket,
                batch_type=config.batch_type,
            ),
            start=1,
        )
        if done:
            for step, _ in numbered:
                if step == done:
                    break
            rng.bit_generator.state = resumed
        for group, last in _groups(numbered, config.accumulate):
            self._update([shard for _, shard in group], group[-1][0])
            patience_out = False
            if not last and self._every(config.valid_every):
                patience_out = self.validation(mid_epoch=True)[2]
                self.vote()
            if self.signalled:
                self.stop("interrupted")
            if patience_out:
                return "patience"
            if last:
                break
            reason = self.limit_reached()
            if reason is not None:
                return reason
            if self._every(config.save_every):
                state.rng = rng.bit_generator.state
                self.checkpoints.write(self.model, state, self._where())
        return None

    def _update(self, group: list[tuple[Batch | None, int]], step: int) -> None:
        """One optimizer update on ``group``, this rank's shares of the epoch's batches up
        to number ``step`` with each batch's target tokens over all ranks."""
        config, state, model = self.config, self.state, self.model
        start = time.perf_counter()
        batches = [batch for batch, _ in group if batch is not None]
        tokens = float(sum(total for _, total in group))
        if config.teacher_forcing < 1.0:
            batches = [
                scheduled_sampling(model, batch, config.teacher_forcing, self.rng)
                for batch in batches
            ]
        rate = self.rate(state.updates + 1)
        model.set_learning_rate(rate)
        if self.group.world_size == 1:
            loss = model.train_step(batches)
            self.vote()
        else:
            (loss,) = self.vote(model.train_step(batches, total_tokens=int(tokens)))
        seconds = time.perf_counter() - start
        state.epoch_seconds += seconds
        if not math.isfinite(loss):
            raise TrainingError(
                f"epoch {state.epoch + 1} step {step}: the training loss is {loss} (not "
                f"finite; learning rate {rate:g}); training stopped and "
                f"{self.checkpoints.kept()}"
            )
        state.epoch_loss += loss * tokens
        state.epoch_tokens += tokens
        state.step, state.updates = step, state.updates + 1
        self.update_lines.add(loss, tokens, seconds)
        if self._every(config.log_every):
            self.update_lines.write(state, rate)

    def _every(self, period: int) -> bool:
        return period > 0 and self.state.updates % period == 0

    def vote(self, *values: float) -> list[float]:
        """``values`` summed over the ranks, and whether any rank has received SIGINT or
        SIGTERM or passed ``max_time`` (:attr:`signalled`, :attr:`time_up`), so that every
        rank stops at the same update. One collective call, at every update."""
        flags = [
            float(self.signals.received is not None),
            float(self.deadline is not None and clock() >= self.deadline),
        ]
        if self.group.world_size == 1:
            reduced = [*values, *flags]
        else:
            reduced = self.group.all_reduce([*values, *flags])
        self.signalled, self.time_up = reduced[-2] > 0, reduced[-1] > 0
        return reduced[:-2]

    @property
    def signal(self) -> int:
        """The signal to report: this rank's, or SIGTERM for one received by another."""
        return self.signals.received or int(signal.SIGTERM)

    def failure(self, error: Exception) -> TrainingError:
        """The error of a data-parallel run whose collective operation raised ``error``."""
        failed = self.group.failed_ranks(error)
        world, launcher = self.group.world_size, self.group.launcher
        if failed:
            who = f"rank{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))}"
            said = f"{who} of {world} ({launcher}) failed or stopped"
        else:
            said = f"a collective operation of the {world} ranks ({launcher}) failed"
        return TrainingError(
            f"rank {self.group.rank}: {said} at {self._where()} ({type(error).__name__}: "
            f"{str(error).strip()[:300]}); training stopped and {self.checkpoints.kept()}"
        )

    def _where(self) -> str:
        return f"epoch {self.state.epoch + 1} step {self.state.step}"

    def validation(
        self, mid_epoch: bool = False, at_stop: bool = False
    ) -> tuple[float, float, bool]:
        """Evaluate the model now (once per update count: a second call at the same update
        gives the first one's figures) and, unless ``at_stop``, track the best score;
        returns the loss, the accuracy and whether patience ran out.

        ``at_stop``: a validation due only because training stops here; it is reported
        and recorded, but an uninterrupted run would not have made it, so it must not
        move what a resumed run carries on from (patience, plateau, best score and
        weights)."""
        state, config = self.state, self.config
        if self.validated_at == state.updates:
            return self.last_validation
        start = time.perf_counter()
        loss, accuracy = evaluate(self.model, *self.eval_pairs, self.group)
        state.epoch_seconds += time.perf_counter() - start
        on = "validation" if self.has_valid else "training-set"
        if not math.isfinite(loss):
            raise TrainingError(
                f"{self._where()}: the {on} loss is {loss} (not finite); training stopped "
                f"and {self.checkpoints.kept()}"
            )
        before = state.best_score
        score = loss if config.early_stopping_metric == "loss" else -accuracy
        patience_out = (
            False if at_stop else track_best(self.model, state, config, score, self.has_valid)
        )
        self.validated_at, self.last_validation = state.updates, (loss, accuracy, patience_out)
        if mid_epoch:
            log_validation(state, loss, accuracy, self.has_valid, at_stop)
        if self.on_validation is not None:
            self.on_validation(
                {
                    "update": state.updates,
                    "epoch": state.epoch + 1,
                    "step": state.step,
                    "valid_loss": loss,
                    "valid_accuracy": accuracy,
                    "evaluated_on": "valid" if self.has_valid else "train",
                    "best": self.has_valid and state.best_score < before,
                    "at_stop": at_stop,
                }
            )
        return self.last_validation

    def _stop_record(self, loss: float, accuracy: float) -> dict[str, Any]:
        """The history record of a validation at a stop within epoch ``state.epoch + 1``:
        an epoch record's keys for the epoch so far, plus ``step`` and ``at_stop``."""
        state = self.state
        return {
            "epoch": state.epoch + 1,
            "step": state.step,
            "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
            "valid_loss": loss,
            "valid_accuracy": accuracy,
            "evaluated_on": "valid" if self.has_valid else "train",
            "learning_rate": self.rate(),
            "seconds": state.epoch_seconds,
            "updates": state.updates,
            "at_stop": True,
        }

    def limit_reached(self) -> str | None:
        """``"max_updates"`` or ``"max_time"`` once that limit is reached, else None."""
        if self.config.max_updates and self.state.updates >= self.config.max_updates:
            return "max_updates"
        if self.group.world_size > 1:
            # the deadline as voted by all ranks, so that they stop at the same update
            return "max_time" if self.time_up else None
        if self.deadline is not None and clock() >= self.deadline:
            return "max_time"
        return None

    def save_due(self) -> bool:
        return self._every(self.config.save_every)

    def stop(self, reason: str) -> None:
        """End training in the middle of an epoch for ``reason``: on a limit, validate the
        weights it ends with for the record (unless a validation was due here anyway), save,
        and raise on a signal."""
        state = self.state
        if reason in ("max_updates", "max_time") and self.validated_at != state.updates:
            loss, accuracy, _ = self.validation(mid_epoch=True, at_stop=True)
            state.history.append(self._stop_record(loss, accuracy))
        log_stop(reason, state, self.config.valid_every)
        state.rng, state.stopped = self.rng.bit_generator.state, reason
        self.checkpoints.write(self.model, state, self._where())
        if reason == "interrupted":
            raise TrainingInterrupted(
                self.checkpoints.interrupted(state.epoch + 1, state.step), self.signal
            )


def _end_epoch(
    state: TrainerState,
    epoch: int,
    validation: tuple[float, float],
    has_valid: bool,
    learning_rate: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Append the record of the epoch just trained and evaluated (``validation``: loss and
    accuracy; ``learning_rate``: of its last update); back to a boundary."""
    valid_loss, valid_acc = validation
    record = {
        "epoch": epoch,
        "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
        "valid_loss": valid_loss,
        "valid_accuracy": valid_acc,
        "evaluated_on": "valid" if has_valid else "train",
        "learning_rate": learning_rate,
        "seconds": state.epoch_seconds,
        "updates": state.updates,
    }
    state.history.append(record)
    state.epoch, state.step, state.epoch_rng = epoch, 0, None
    state.epoch_loss = state.epoch_tokens = state.epoch_seconds = 0.0
    state.rng = rng.bit_generator.state
    return record
