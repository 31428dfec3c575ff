"""TensorBoard event files: a seq2seq-kit plugin on the training-event hooks.

It writes the training loss, learning rate and throughput of every ``train.log_every``
line (``on_update``), every numeric figure of every validation (``on_validation``) and each
epoch's figures (``on_epoch_end``) as TensorBoard scalars whose step is the update count
over the whole run (tags: :mod:`seq2seq_kit_tensorboard.tags`). For a model written to
``DIR`` the event files go to ``DIR.tensorboard/run-N`` beside it; without a model directory
to ``$SEQ2SEQ_KIT_TENSORBOARD/run-N`` if that is set, else nowhere. A resumed run continues
its run's curves; a new run at the same path gets the next ``run-N``
(:mod:`seq2seq_kit_tensorboard.runs`). The writer is tensorboardX, imported at the first
record and without torch or TensorFlow (:mod:`seq2seq_kit_tensorboard.events`).

``tensorboard --logdir DIR.tensorboard`` (or a folder above several models) shows them.
"""

from __future__ import annotations

from typing import Any

from seq2seq_kit import hookimpl

from .runs import close, log_root, log_scalars
from .tags import epoch_scalars, step_of, update_scalars, validation_scalars


@hookimpl
def on_update(record: dict[str, Any], out_dir: str | None) -> None:
    root = log_root(out_dir)
    if root is not None:
        log_scalars(root, step_of(record, "update", "on_update"), update_scalars(record))


@hookimpl
def on_validation(record: dict[str, Any], out_dir: str | None) -> None:
    root = log_root(out_dir)
    if root is not None:
        step = step_of(record, "update", "on_validation")
        log_scalars(root, step, validation_scalars(record))


@hookimpl
def on_epoch_end(record: dict[str, Any], out_dir: str | None) -> None:
    root = log_root(out_dir)
    if root is not None:
        log_scalars(root, step_of(record, "updates", "on_epoch_end"), epoch_scalars(record))


@hookimpl
def on_train_end(out_dir: str | None) -> None:
    root = log_root(out_dir)
    if root is not None:
        close(root)
