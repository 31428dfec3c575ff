"""What a resumed run may change: the requested settings against the saved run's.

A key that defines what is trained (data, limit, split, seed, tokenizer, every ``[model]``
key and the architecture, Adam's betas and epsilon) must agree with the saved run; the keys
in :data:`seq2seq_kit.config.RESUMABLE` (how long to train, early stopping, the learning
rate and its plateau decay, label smoothing, saving, decoding defaults) may change, as
OpenNMT's reset options allow, and are returned so that the run records them.

The resumed run then checks that its pairs are the saved run's (:func:`check_same_data`)
and continues from the saved weights, optimizer and trainer state (:func:`continue_run`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .backend import Model
from .checkpoint import Checkpoint
from .config import RESUMABLE, Config, describe_errors, describe_resumable, explicit_keys
from .data import Pair
from .errors import CheckpointError, ConfigError, DataError, option
from .run_record import RunRecord
from .trainer import TrainerState
from .weights import check_weights

#: Keys naming data that may move (another path, another copy): the pairs must still be the
#: saved run's (:func:`check_same_data`).
MOVABLE = frozenset({"data.source", "data.valid"})


def _same_value(key: str, old: Any, new: Any) -> bool:
    if key in ("data.source", "data.valid") and isinstance(old, str) and isinstance(new, str):
        return _source_key(old) == _source_key(new)
    return old == new


def _source_key(source: str) -> str:
    """A data source as compared on resume: files and corpus folders by their absolute
    path."""
    return str(Path(source).resolve()) if os.path.exists(source) else source


def _saved_config(saved: Checkpoint, record: RunRecord, resume: str | os.PathLike[str]) -> Config:
    """The saved run's config, after checking ``model.json`` holds what resuming reads."""
    trainer = record.trainer
    problems = []
    epoch = trainer.get("epoch") if isinstance(trainer, dict) else None
    if epoch is None:
        problems.append("meta.trainer.epoch is missing")
    elif type(epoch) is not int or epoch < 0:
        problems.append(f"meta.trainer.epoch is {epoch!r}, not a count of epochs")
    history = record.history
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        problems.append("meta.history is not a list of epoch records")
    if not isinstance(record.resumes, list):
        problems.append("meta.resumes is not a list")
    if not isinstance(record.backend, str):
        problems.append("meta.backend is missing")
    problems += [
        f"{name}.safetensors is missing"
        for name in ("last", "optimizer")
        if name not in saved.extra
    ]
    try:
        config = Config.model_validate(record.config)
    except ValidationError as exc:
        problems.append(f"meta.config: {describe_errors(exc)}")
    if problems:
        raise CheckpointError(
            f"{Path(resume) / 'model.json'}: cannot resume: {'; '.join(problems)} (load and "
            f"translate still work; start a new run to train on)"
        )
    return config


def resumed_config(
    saved: Checkpoint, requested: Config, resume: str | os.PathLike[str]
) -> tuple[Config, dict[str, list[Any]]]:
    """The saved run's config with the requested resumable changes applied, and those
    changes as ``{"train.epochs": [old, new]}``. Only the keys ``requested`` sets
    (:func:`seq2seq_kit.config.explicit_keys`) are compared; file paths by where they point.

    Raises:
        CheckpointError: ``model.json`` lacks what resuming reads (the trainer's state, the
            history, the config...) or the last weights and optimizer state are missing.
        ConfigError: naming every conflicting key with both values; or a change that
            contradicts the saved keys (``lr_patience`` with an ``lr_schedule``); or no
            epochs, or no updates under ``train.max_updates``, are left to train; or the
            saved run stopped early and ``train.patience`` is unchanged.
    """
    record = RunRecord.from_dict(saved.meta)
    merged = _saved_config(saved, record, resume).model_dump()
    where = option("resume", resume)
    changes = _apply_requested(merged, requested, where)
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:  # a change that contradicts a saved key
        raise ConfigError(f"{where}: {describe_errors(exc)}") from None
    _check_left_to_train(cfg, record, changes, where)
    return cfg, changes


def _apply_requested(merged: dict[str, Any], requested: Config, where: str) -> dict[str, list[Any]]:
    """Apply to the saved config ``merged`` (a ``model_dump``, changed in place) the keys
    ``requested`` sets that may change; returns them as ``{"train.epochs": [old, new]}``.

    Raises:
        ConfigError: naming every key that differs and may not change, with both values.
    """
    changes: dict[str, list[Any]] = {}
    conflicts = []
    for section, values in explicit_keys(requested).items():
        if not isinstance(values, dict):  # the top-level backend: any backend resumes any run
            continue
        for key, new in values.items():
            name = f"{section}.{key}"
            if key not in merged[section]:  # a key of another architecture's [model]
                architecture = merged[section].get("architecture", "rnn")
                conflicts.append(
                    f"{name} is {new!r} now but no key of the saved run's model "
                    f"(architecture {architecture!r})"
                )
                continue
            old = merged[section][key]
            if _same_value(name, old, new):
                continue
            if name in RESUMABLE or name in MOVABLE:
                merged[section][key] = new
                changes[name] = [old, new]
            else:
                conflicts.append(f"{name} is {old!r} in the saved run but {new!r} now")
    if conflicts:
        raise ConfigError(
            f"{where}: " + "; ".join(conflicts) + ". A resumed run trains what it started "
            f"with; to change these, start a new run with {option('out', metavar='DIR')} (what "
            f"may change on resume: the backend, {describe_resumable()})"
        )
    return changes


def _check_left_to_train(
    cfg: Config, record: RunRecord, changes: dict[str, list[Any]], where: str
) -> None:
    """Raises ConfigError: the resumed config ``cfg`` leaves nothing to train after the saved
    run: no epoch, no update under ``train.max_updates``, or no patience after an early
    stop that ``changes`` does not raise."""
    trainer = record.trainer_state
    done = int(trainer["epoch"])
    if cfg.train.epochs <= done:
        raise ConfigError(
            f"{where}: the saved run has done {done} epochs and train.epochs is "
            f"{cfg.train.epochs}: nothing to train; ask for more "
            f"({option('epochs', metavar='N')} with N > {done})"
        )
    updates = trainer.get("updates")
    if type(updates) is int and 0 < cfg.train.max_updates <= updates:
        raise ConfigError(
            f"{where}: the saved run has done {updates} updates and "
            f"train.max_updates is {cfg.train.max_updates}: nothing to train; ask for more "
            f"({option('train.max_updates', metavar='N')} with N > {updates}, or 0 for no "
            f"limit)"
        )
    history = record.history or [{}]
    early = history[-1].get("early_stopped") or trainer.get("stopped") == "patience"
    if early and "train.patience" not in changes:
        counted = "validations" if cfg.train.valid_every else "epochs"
        at = f"in epoch {done + 1}" if trainer.get("step") else f"at epoch {done}"
        raise ConfigError(
            f"{where}: training stopped early {at} "
            f"(train.patience {cfg.train.patience} {counted} without a better validation "
            f"score); raise {option('train.patience', None)}, or set it to 0, to train on"
        )


@dataclass
class Continuation:
    """How a resumed run goes on from the saved one.

    Attributes:
        state: the trainer's state as saved; its learning rate the resumed config's when
            that changed, its best weights the saved ``weights.safetensors`` (a kept
            checkpoint's ``best.safetensors`` when it has one) when a validation scored them.
        changes: what the run records as changed: the config's keys, and
            ``distributed.world_size`` when it resumes on another number of processes.
        resumes: the saved run's ``meta["resumes"]`` with this resume's entry appended.
        seconds: the seconds the saved run spent training.
    """

    state: TrainerState
    changes: dict[str, list[Any]]
    resumes: list[dict[str, Any]]
    seconds: float


def continue_run(
    saved: Checkpoint,
    model: Model,
    cfg: Config,
    changes: dict[str, list[Any]],
    *,
    backend: str,
    world_size: int,
    validating: bool,
) -> Continuation:
    """Give ``model`` the saved run's last weights and optimizer state, and read the rest of
    its training state: the run ``saved`` (loaded with its further tensor files) goes on
    with the resumed config ``cfg`` and its ``changes`` (:func:`resumed_config`), trained
    by ``backend`` over ``world_size`` processes; ``validating``: it has validation pairs.

    Raises:
        CheckpointError: the saved training state is malformed.
        ConfigError: another world size, in the middle of an epoch.
    """
    record = RunRecord.from_dict(saved.meta)
    try:
        model.set_weights(saved.extra["last"])
        model.set_optimizer_state(saved.extra["optimizer"])
        # a state saved before updates were counted: the optimizer's count of them
        state = TrainerState.from_json(
            record.trainer,
            record.history,
            updates=int(saved.extra["optimizer"].get("step", 0)),
            validations=record.validations,
        )
        seconds = float(0.0 if record.seconds is None else record.seconds)
        if "best" in saved.extra:
            check_weights(saved.spec, saved.extra["best"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"the saved run's model.json cannot be resumed: malformed training state "
            f"({type(exc).__name__}: {exc})"
        ) from None
    # weights.safetensors holds the last weights when no validation has scored any:
    # they are no best weights to fall back on. A kept checkpoint's are its validation's,
    # with the best so far beside them when they are others (best.safetensors).
    scored = validating and math.isfinite(state.best_score)
    state.best_weights = saved.extra.get("best", saved.weights) if scored else None
    if "train.learning_rate" in changes:
        state.learning_rate = cfg.train.learning_rate
    before = _check_world_size(record, state, world_size)
    if before != world_size:
        # the global batch changes with it: said and recorded as a change of the run
        changes = {**changes, "distributed.world_size": [before, world_size]}
    resumes = [
        *record.resumes,
        {"after_epoch": state.epoch, "backend": backend, "changed": changes},
    ]
    return Continuation(state, changes, resumes, seconds)


def _check_world_size(record: RunRecord, state: TrainerState, world_size: int) -> int:
    """The saved run's world size, once checked that a run saved in the middle of an epoch
    resumes with it: the saved step counts batches of ``batch_size`` x that many ranks.

    Raises:
        ConfigError: another world size, mid-epoch.
    """
    before = (record.distributed or {}).get("world_size", 1)  # checked when loaded
    if before != world_size and state.step:
        raise ConfigError(
            f"the saved run stopped at epoch {state.epoch + 1} step {state.step} with "
            f"{before} process(es) and resumes with {world_size}: in the middle of an epoch a "
            f"run resumes only with the world size it ran with (at an epoch end any will do)"
        )
    return before


def check_same_data(
    saved: Checkpoint, fingerprint: str, changes: dict[str, list[Any]], where: str
) -> None:
    """Check that a resumed run trains on the saved run's pairs: ``fingerprint`` is the
    :func:`data_fingerprint` of the pairs loaded now (a corpus's own for a corpus), to
    match the one the saved run recorded (a run saved before it was recorded matches any).

    Raises:
        DataError: they differ, naming the data keys in ``changes`` that moved and the
            data (``where``: its path or name).
    """
    recorded = RunRecord.from_dict(saved.meta).data_sha256
    if recorded is None or recorded == fingerprint:
        return
    moved = [
        f"{k} is {old!r} in the saved run but {new!r} now"
        for k, (old, new) in changes.items()
        if k in MOVABLE
    ]
    raise DataError(
        "; ".join(moved + ["the training or validation pairs differ from the saved run's"])
        + " (data given anew, or the file changed since?); a resumed run trains on the "
        f"pairs it started with: start a new run with {option('out', metavar='DIR')} to "
        "train on other data",
        where,
    )


def data_fingerprint(train_pairs: Sequence[Pair], valid_pairs: Sequence[Pair]) -> str:
    """SHA-256 of the training and validation pairs, to tell a resumed run's data changed."""
    digest = hashlib.sha256()
    for side in (train_pairs, valid_pairs):
        digest.update(json.dumps(list(side), ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()
