"""What a resumed run may change: the requested settings against the saved run's.

A key that defines what is trained (data, limit, split, seed, tokenizer, every ``[model]``
key and the architecture, Adam's betas and epsilon) must agree with the saved run; the keys
in :data:`seq2seq_kit.config.RESUMABLE` (how long to train, early stopping, the learning
rate and its plateau decay, label smoothing, saving, decoding defaults) may change, as
OpenNMT's reset options allow, and are returned so that the run records them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .checkpoint import Checkpoint
from .config import RESUMABLE, Config, describe_errors, describe_resumable, explicit_keys
from .data import Pair
from .errors import CheckpointError, ConfigError, option

#: Keys naming data that may move (another path, another copy): the caller then checks the
#: pairs are the saved run's by :func:`data_fingerprint`.
MOVABLE = frozenset({"data.source", "data.valid"})


def _same_value(key: str, old: Any, new: Any) -> bool:
    if key in ("data.source", "data.valid") and isinstance(old, str) and isinstance(new, str):
        return _source_key(old) == _source_key(new)
    return old == new


def _source_key(source: str) -> str:
    """A data source as compared on resume: files and corpus folders by their absolute
    path."""
    return str(Path(source).resolve()) if os.path.exists(source) else source


def _saved_config(saved: Checkpoint, resume: str | os.PathLike[str]) -> Config:
    """The saved run's config, after checking ``model.json`` holds what resuming reads."""
    meta = saved.meta
    trainer = meta.get("trainer")
    problems = []
    epoch = trainer.get("epoch") if isinstance(trainer, dict) else None
    if epoch is None:
        problems.append("meta.trainer.epoch is missing")
    elif type(epoch) is not int or epoch < 0:
        problems.append(f"meta.trainer.epoch is {epoch!r}, not a count of epochs")
    history = meta.get("history")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        problems.append("meta.history is not a list of epoch records")
    if not isinstance(meta.get("resumes", []), list):
        problems.append("meta.resumes is not a list")
    if not isinstance(meta.get("backend"), str):
        problems.append("meta.backend is missing")
    problems += [
        f"{name}.safetensors is missing"
        for name in ("last", "optimizer")
        if name not in saved.extra
    ]
    try:
        config = Config.model_validate(meta.get("config"))
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
        ConfigError: naming every conflicting key with both values; or a change that
            contradicts the saved keys (``lr_patience`` with an ``lr_schedule``); or no
            epochs, or no updates under ``train.max_updates``, are left to train; or the
            saved run stopped early and ``train.patience`` is unchanged.
    """
    merged = _saved_config(saved, resume).model_dump()
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
    where = option("resume", resume)
    if conflicts:
        raise ConfigError(
            f"{where}: " + "; ".join(conflicts) + ". A resumed run trains what it started "
            f"with; to change these, start a new run with {option('out', metavar='DIR')} (what "
            f"may change on resume: the backend, {describe_resumable()})"
        )
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:  # a change that contradicts a saved key
        raise ConfigError(f"{where}: {describe_errors(exc)}") from None
    trainer = saved.meta["trainer"]
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
    history = saved.meta.get("history") or [{}]
    early = history[-1].get("early_stopped") or trainer.get("stopped") == "patience"
    if early and "train.patience" not in changes:
        counted = "validations" if cfg.train.valid_every else "epochs"
        at = f"in epoch {done + 1}" if trainer.get("step") else f"at epoch {done}"
        raise ConfigError(
            f"{where}: training stopped early {at} "
            f"(train.patience {cfg.train.patience} {counted} without a better validation "
            f"score); raise {option('train.patience', None)}, or set it to 0, to train on"
        )
    return cfg, changes


def data_fingerprint(train_pairs: Sequence[Pair], valid_pairs: Sequence[Pair]) -> str:
    """SHA-256 of the training and validation pairs, to tell a resumed run's data changed."""
    digest = hashlib.sha256()
    for side in (train_pairs, valid_pairs):
        digest.update(json.dumps(list(side), ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()
