"""The loop of one training run: epochs of shuffled batches grouped into updates, the
learning rate set before each, validations, saves and log lines at the points the options
name, and the stops (epochs done, patience, ``max_updates``, ``max_time``, a signal), every
rank of a data-parallel run taking the same decisions at the same update."""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import Model
from ..batch import Batch
from ..batching import shards
from ..config import TrainConfig
from ..errors import TrainingError, TrainingInterrupted
from ..runtime import ProcessGroup
from ..schedules import learning_rate_at, model_width
from .cadence import Checkpoints
from .early_stopping import Scoring, Validation, Validator
from .log import EpochLines, UpdateLines, log_stop
from .scheduled_sampling import scheduled_sampling
from .signals import StopSignals
from .state import Ids, TrainerState, where

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass(frozen=True)
class Hooks:
    """What a run calls as it goes, each optional (only rank 0 of a data-parallel run is
    given them; the others get ``out_dir`` alone, for their messages).

    Attributes:
        on_epoch_end: receives each epoch record.
        on_update: receives the record of each ``log_every`` line.
        on_validation: receives the record of each validation.
        save: writes the model and the state it is given.
        out_dir: where ``save`` writes, named in messages.
    """

    on_epoch_end: Callable[[dict[str, Any]], None] | None = None
    on_update: Callable[[dict[str, Any]], None] | None = None
    on_validation: Callable[[dict[str, Any]], None] | None = None
    save: Callable[[TrainerState], None] | None = None
    out_dir: str | None = None


class Run:
    """One call of :func:`seq2seq_kit.trainer.fit`: trains the epochs left, taking updates,
    validating, logging and saving at the points ``config`` names, until one of them stops
    the run; ``clock`` is read for ``max_time`` (seconds)."""

    def __init__(
        self,
        model: Model,
        config: TrainConfig,
        state: TrainerState,
        scoring: Scoring,
        hooks: Hooks,
        signals: StopSignals,
        group: ProcessGroup,
        clock: Callable[[], float],
    ):
        self.model, self.config, self.state, self.group = model, config, state, group
        self.rng = np.random.default_rng(config.seed)
        if state.rng is not None:
            self.rng.bit_generator.state = state.rng
        self.has_valid, self.hooks = scoring.has_valid, hooks
        self.signals, self.clock = signals, clock
        self.checkpoints = Checkpoints(hooks.save, hooks.out_dir, config.save_seconds)
        self.validator = Validator(
            model, config, state, scoring, group, hooks.on_validation, self.checkpoints
        )
        self.update_lines = UpdateLines(hooks.on_update)
        self.epoch_lines = EpochLines(config.epochs, config.log_seconds)
        # whether any rank received SIGINT/SIGTERM, or reached max_time, at the last vote
        self.signalled = self.time_up = False
        self.d_model = model_width(model.spec)
        self.deadline = clock() + config.max_time if config.max_time else None
        # a kept checkpoint holds the state of its validation: every one that counts saves
        self.keeping = bool(config.keep_last or config.keep_best)

    def epochs(self, train: tuple[Ids, Ids]) -> None:
        """Train on ``train`` (the sources' and targets' token ids) from epoch
        ``state.epoch + 1`` on, with a progress bar, until the run stops.

        Raises:
            TrainingError: a non-finite loss or weight.
            TrainingInterrupted: SIGINT or SIGTERM, after the save.
        """
        from tqdm.auto import tqdm

        config, state = self.config, self.state
        bar = tqdm(
            desc="train",
            unit="epoch",
            initial=state.epoch,
            total=config.epochs,
            disable=None if config.progress and self.group.rank == 0 else True,
        )
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                stop = self.train_epoch(train)
                if stop is not None:  # in the middle of the epoch
                    self.stop(stop)
                    return
                if self._end_epoch(epoch, bar):
                    return
        finally:
            bar.close()

    def _end_epoch(self, epoch: int, bar: tqdm) -> bool:
        """Validate, record, log, report and save at the end of ``epoch``; whether the run
        stops there."""
        config, state, checkpoints = self.config, self.state, self.checkpoints
        steps, rate = state.step, self.rate()  # before a plateau cut
        validation = self.validator.validate()
        self.vote()  # a signal or the deadline during the evaluation, on any rank
        record = _close_epoch(state, epoch, validation, self.has_valid, rate, self.rng)
        bar.set_postfix(
            loss=f"{record['train_loss']:.4f}",
            val=f"{validation.loss:.4f}",
            acc=f"{validation.accuracy:.3f}",
            **{name: f"{value:.4g}" for name, value in validation.decoded.items()},
            refresh=False,
        )
        bar.update(1)
        stop = "patience" if validation.patience_out else self.limit_reached()
        if stop is None and epoch == config.epochs:
            stop = "epochs"
        self.epoch_lines.write(record, stopping=bool(stop))
        if stop == "patience":
            record["early_stopped"] = True
        if stop is not None:
            log_stop(stop, state, config.valid_every)
        if self.hooks.on_epoch_end is not None:
            self.hooks.on_epoch_end(record)
        state.stopped = stop
        if stop or checkpoints.due() or self._every(config.save_every) or self._keep_due():
            checkpoints.write(self.model, state, f"epoch {epoch} step {steps}")
        if self.signalled:  # arrived during the evaluation
            state.stopped = "interrupted"
            checkpoints.write(self.model, state, f"epoch {epoch} step {steps}")
            raise TrainingInterrupted(checkpoints.interrupted(epoch, steps), self.signal)
        return bool(stop)

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
                patience_out = self.validator.validate(mid_epoch=True).patience_out
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
            if self._every(config.save_every) or self._keep_due():
                state.rng = rng.bit_generator.state
                self.checkpoints.write(self.model, state, where(state))
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

    def _keep_due(self) -> bool:
        """Whether a save is due to keep a checkpoint (``keep_last``, ``keep_best``) of a
        validation that counted at this update."""
        tracked = self.state.tracked
        return self.keeping and tracked is not None and tracked.update == self.state.updates

    def vote(self, *values: float) -> list[float]:
        """``values`` summed over the ranks, and whether any rank has received SIGINT or
        SIGTERM or passed ``max_time`` (:attr:`signalled`, :attr:`time_up`), so that every
        rank stops at the same update. One collective call, at every update."""
        flags = [
            float(self.signals.received is not None),
            float(self.deadline is not None and self.clock() >= self.deadline),
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
            f"rank {self.group.rank}: {said} at {where(self.state)} ({type(error).__name__}: "
            f"{str(error).strip()[:300]}); training stopped and {self.checkpoints.kept()}"
        )

    def limit_reached(self) -> str | None:
        """``"max_updates"`` or ``"max_time"`` once that limit is reached, else None."""
        if self.config.max_updates and self.state.updates >= self.config.max_updates:
            return "max_updates"
        if self.group.world_size > 1:
            # the deadline as voted by all ranks, so that they stop at the same update
            return "max_time" if self.time_up else None
        if self.deadline is not None and self.clock() >= self.deadline:
            return "max_time"
        return None

    def stop(self, reason: str) -> None:
        """End training in the middle of an epoch for ``reason``: on a limit, validate the
        weights it ends with for the record (unless a validation was due here anyway), save,
        and raise on a signal."""
        state = self.state
        if reason in ("max_updates", "max_time"):
            self.validator.at_stop(self.rate())
        log_stop(reason, state, self.config.valid_every)
        state.rng, state.stopped = self.rng.bit_generator.state, reason
        self.checkpoints.write(self.model, state, where(state))
        if reason == "interrupted":
            raise TrainingInterrupted(
                self.checkpoints.interrupted(state.epoch + 1, state.step), self.signal
            )


def _groups(items: Iterator[Any], size: int) -> Iterator[tuple[list[Any], bool]]:
    """``items`` in consecutive lists of ``size`` (the last one shorter when they run out),
    each with whether it is the last (known by reading the next list ahead)."""
    group = list(itertools.islice(items, size))
    while group:
        following = list(itertools.islice(items, size))
        yield group, not following
        group = following


def _close_epoch(
    state: TrainerState,
    epoch: int,
    validation: Validation,
    has_valid: bool,
    learning_rate: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Append the record of the epoch just trained and evaluated (``validation``: its
    figures; ``learning_rate``: of its last update); back to a boundary."""
    record = {
        "epoch": epoch,
        "train_loss": state.epoch_loss / max(state.epoch_tokens, 1.0),
        **validation.figures(),
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
