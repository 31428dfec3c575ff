"""Training curves: a seq2seq-kit plugin on the ``on_train_end`` hook.

When a training run that writes a model directory ends, it draws the loss and validation
accuracy, and the decoded validation scores when ``train.valid_metrics`` asks for them, at
every validation (by update when validations fall within epochs, by epoch otherwise) into
``DIR/curves.png``, as ``seq2seq-kit plot --model DIR`` does
(:func:`seq2seq_kit.plots.plot_history`). matplotlib is imported only then.
"""

from __future__ import annotations

import os
from typing import Any

from seq2seq_kit import hookimpl


@hookimpl
def on_train_end(
    history: list[dict[str, Any]], validations: list[dict[str, Any]] | None, out_dir: str | None
) -> None:
    if out_dir is None or not (history or validations):
        return
    from seq2seq_kit.plots import plot_history

    plot_history(history, os.path.join(out_dir, "curves.png"), validations)
