"""Training curves: a seq2seq-kit plugin on the ``on_train_end`` hook.

When a training run that writes a model directory ends, it draws the loss and validation
accuracy per epoch, and the decoded validation scores when ``train.valid_metrics`` asks for
them, into ``DIR/curves.png`` (as ``seq2seq-kit plot --model DIR`` does).
matplotlib is imported only then.
"""

from __future__ import annotations

import os
from typing import Any

from seq2seq_kit import hookimpl


@hookimpl
def on_train_end(history: list[dict[str, Any]], out_dir: str | None) -> None:
    if out_dir is None or not history:
        return
    from seq2seq_kit.plots import plot_history

    plot_history(history, os.path.join(out_dir, "curves.png"))
