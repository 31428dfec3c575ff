"""Training curves and attention heatmaps as PNG files (needs the ``plot`` extra:
matplotlib). Imported only by the ``plot`` command and plot plugins."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Seq2SeqError
from .metrics import LABELS, LOWER_IS_BETTER, METRICS, PERCENT
from .trainer import epoch_records


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Seq2SeqError("plots need matplotlib: pip install 'seq2seq-kit[plot]'") from None
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss (training and validation, nats per token) and validation token accuracy per
    epoch, side by side, and, for a run with decoded validation (``train.valid_metrics``),
    its scores per epoch beside them: chrF, BLEU and TER (0..100) in one panel, exact
    match, CER and token error rate (0..1) in another; written as a PNG to ``path``.

    Raises:
        Seq2SeqError: no epochs recorded, or matplotlib missing.
    """
    history = epoch_records(history)  # a stop's record within an epoch is no epoch
    if not history:
        raise Seq2SeqError("the model has no training history to plot")
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    on = history[-1].get("evaluated_on", "valid")
    decoded = [
        [
            name
            for name in METRICS
            if (name in PERCENT) == percent and f"valid_{name}" in history[-1]
        ]
        for percent in (True, False)
    ]
    panels = [names for names in decoded if names]
    fig, axes = plt.subplots(
        1, 2 + len(panels), figsize=(5 * (2 + len(panels)), 4), constrained_layout=True
    )
    left, right = axes[0], axes[1]
    left.plot(epochs, [r["train_loss"] for r in history], label="training")
    left.plot(epochs, [r["valid_loss"] for r in history], label=f"{on} (teacher-forced)")
    left.set(xlabel="epoch", ylabel="cross-entropy (nats / token)", title="loss")
    left.legend()
    right.plot(epochs, [r["valid_accuracy"] for r in history], color="tab:green")
    right.set(xlabel="epoch", ylabel="token accuracy", title=f"{on} token accuracy", ylim=(0, 1))
    for ax, names in zip(axes[2:], panels, strict=True):
        for name in names:
            # an epoch recorded before decoded validation was asked for has no score: a gap
            values = [r.get(f"valid_{name}", math.nan) for r in history]
            lower = " (lower is better)" if name in LOWER_IS_BETTER else ""
            ax.plot(epochs, values, marker=".", label=LABELS[name] + lower)
        ax.set(
            xlabel="epoch",
            ylabel="sacrebleu score" if names[0] in PERCENT else "share or rate",
            title=f"{on} decoded outputs",
        )
        ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_attention(
    source: Sequence[str],
    output: Sequence[str],
    weights: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Heatmap of float [len(output), len(source)] attention weights: one row per output
    token, one column per source token, written as a PNG to ``path``; ``title`` names
    which attention it is (e.g. a Transformer's top-layer cross-attention)."""
    plt = _pyplot()
    weights = np.asarray(weights)[: len(output), : len(source)]
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.35 * len(source) + 2), max(3.0, 0.35 * len(output) + 1.5)),
        constrained_layout=True,
    )
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), [_visible(t) for t in source])
    ax.set_yticks(range(len(output)), [_visible(t) for t in output])
    ax.set(xlabel="source", ylabel="output")
    if title:
        # wrapped: a narrow heatmap (a short source) must not cut its title off
        ax.set_title(textwrap.fill(title, width=max(24, int(4 * fig.get_figwidth()))))
    fig.colorbar(image, ax=ax, label="attention weight")
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _visible(token: str) -> str:
    return {" ": "␣", "\u202f": "⍽", "\t": "⇥"}.get(token, token)
