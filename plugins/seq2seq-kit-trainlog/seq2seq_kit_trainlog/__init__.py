"""Training-log writer: a seq2seq-kit plugin on the ``on_epoch_end`` hook.

For a model written to ``DIR`` it appends each epoch's record to ``DIR.log.csv`` and
``DIR.log.jsonl`` beside the directory (the model directory itself is replaced atomically
at every save, so files are not kept inside it). Without a model directory it writes to
``$SEQ2SEQ_KIT_TRAINLOG`` (a path prefix) if set, else nowhere. A run starting at epoch 1
truncates the logs; a resumed run appends.
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
    with open(prefix + ".csv", mode, newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS, extrasaction="ignore")
        if mode == "w":
            writer.writeheader()
        writer.writerow(record)
    with open(prefix + ".jsonl", mode) as fh:
        fh.write(json.dumps({k: record.get(k) for k in FIELDS}) + "\n")
