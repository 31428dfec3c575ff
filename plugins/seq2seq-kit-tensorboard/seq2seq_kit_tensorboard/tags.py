"""The scalars of a training-event record, as TensorBoard tags (``group/name``) and values.

TensorBoard draws each group in a section of its own:

- ``train/``: the figures of each ``train.log_every`` line (``on_update``): ``train/loss``
  (nats per target token, token-weighted over the updates since the last line),
  ``train/learning_rate``, ``train/target_tokens_per_second``;
- ``valid/``: every validation (``on_validation``), its keys without the ``valid_``
  prefix: ``valid/loss``, ``valid/accuracy``, and any other metric a record carries
  (``valid_chrf`` becomes ``valid/chrf``); ``train_set/`` instead of ``valid/`` when the run
  has no validation pairs and validation scores the training pairs (``evaluated_on``);
- ``epoch/``: each epoch's record (``on_epoch_end``) less its validation figures, which
  ``on_validation`` gave at the same update: ``epoch/train_loss``, ``epoch/learning_rate``,
  ``epoch/seconds`` (wall time of the epoch's updates and validations) and ``epoch/epoch``
  (the epoch number, which maps TensorBoard's steps to epochs).

Every numeric value is written, so that a figure added to the records later appears without
a change here; booleans (``best``, ``at_stop``) are flags, not figures, and the counts that
place a record (``update``, ``step``, ``updates``) are its step.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import Any

#: The keys that say where a record is in the run rather than what it measured.
POSITION = frozenset({"update", "epoch", "step", "updates"})


def numeric(record: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """The record's numeric entries as floats, position keys and booleans left out."""
    for key, value in record.items():
        if key in POSITION or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        yield key, float(value)


def update_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """``train/...`` for an ``on_update`` record: ``train_loss`` is ``train/loss``."""
    return {f"train/{key.removeprefix('train_')}": value for key, value in numeric(record)}


def validation_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """``valid/...`` (or ``train_set/...``) for an ``on_validation`` record: every numeric
    key, ``valid_loss`` as ``valid/loss``."""
    group = "valid" if record.get("evaluated_on", "valid") == "valid" else "train_set"
    return {f"{group}/{key.removeprefix('valid_')}": value for key, value in numeric(record)}


def epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """``epoch/...`` for an ``on_epoch_end`` record, its ``valid_*`` figures left to
    :func:`validation_scalars`; the epoch number as ``epoch/epoch``."""
    scalars = {
        f"epoch/{key}": value for key, value in numeric(record) if not key.startswith("valid_")
    }
    epoch = record.get("epoch")
    if isinstance(epoch, numbers.Integral) and not isinstance(epoch, bool):
        scalars["epoch/epoch"] = float(epoch)
    return scalars


def step_of(record: Mapping[str, Any], key: str, hook: str) -> int:
    """The update count ``record[key]``: the step of every scalar of the record.

    Raises:
        ValueError: the record has no such count (naming the hook, the key and the keys it
            has).
    """
    step = record.get(key)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(
            f"the {hook} record has no update count {key!r} (a whole number >= 0), so its "
            f"figures have no TensorBoard step: it has {step!r} among {sorted(record)}"
        )
    return int(step)
