"""Training-log writer: a seq2seq-kit plugin on the ``on_epoch_end`` and ``on_update``
hooks.

For a model written to ``DIR`` it appends each epoch's record (with its decoded validation
scores, ``valid_chrf``..., when ``train.valid_metrics`` asks for them) to ``DIR.log.csv`` and
``DIR.log.jsonl`` beside the directory (the model directory itself is replaced atomically
at every save, so files are not kept inside it), and each ``train.log_every`` record to
``DIR.log.updates.jsonl``. Without a model directory it writes to
``$SEQ2SEQ_KIT_TRAINLOG`` (a path prefix) if set, else nowhere. A run starting at epoch 1
truncates the epoch logs, and a record whose update is not past the last one logged
truncates the update log (a new run); a resumed run appends.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from seq2seq_kit import hookimpl

FIELDS = [
    "epoch",
    "train_loss",
    "valid_loss",
    "valid_accuracy",
    "evaluated_on",
    "learning_rate",
    "seconds",
]


UPDATE_FIELDS = [
    "update",
    "epoch",
    "step",
    "train_loss",
    "learning_rate",
    "target_tokens_per_second",
]


def epoch_fields(record: dict[str, Any]) -> list[str]:
    """The columns of an epoch record: :data:`FIELDS`, with the record's decoded validation
    scores (``valid_<metric>``; the same in every epoch of a run, resumes included) after
    ``valid_accuracy``."""
    decoded = [key for key in record if key.startswith("valid_") and key not in FIELDS]
    at = FIELDS.index("valid_accuracy") + 1
    return [*FIELDS[:at], *decoded, *FIELDS[at:]]


def log_prefix(out_dir: str | None) -> str | None:
    if out_dir is not None:
        return os.path.normpath(out_dir) + ".log"
    return os.environ.get("SEQ2SEQ_KIT_TRAINLOG") or None


@hookimpl
def on_epoch_end(record: dict[str, Any], out_dir: str | None) -> None:
    prefix = log_prefix(out_dir)
    if prefix is None:
        return
    mode = "w" if record["epoch"] == 1 else "a"
    fields = epoch_fields(record)
    with open(prefix + ".csv", mode, newline="") as fh:
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        if mode == "w":
            writer.writeheader()
        writer.writerow(record)
    with open(prefix + ".jsonl", mode) as fh:
        fh.write(json.dumps({k: record.get(k) for k in fields}) + "\n")


def _last_update(path: str) -> int | None:
    """The update of the last record in the update log at ``path``; None when there is
    none (no file, empty, or unreadable: then a new log starts)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))  # a record is far shorter
            lines = fh.read().splitlines()
        return int(json.loads(lines[-1])["update"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


@hookimpl
def on_update(record: dict[str, Any], out_dir: str | None) -> None:
    prefix = log_prefix(out_dir)
    if prefix is None:
        return
    path = prefix + ".updates.jsonl"
    last = _last_update(path)
    mode = "a" if last is not None and last < record["update"] else "w"
    with open(path, mode) as fh:
        fh.write(json.dumps({k: record.get(k) for k in UPDATE_FIELDS}) + "\n")
