"""Training curves and attention heatmaps as PNG files (needs the ``plot`` extra:
matplotlib). Imported only by the ``plot`` command and plot plugins."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
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


def plot_history(
    history: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    validations: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """The training curves of :func:`history_figure` written as a PNG to ``path``.

    Raises:
        Seq2SeqError: as :func:`history_figure`.
    """
    fig = history_figure(history, validations)
    path = Path(path)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def history_figure(
    history: Sequence[dict[str, Any]], validations: Sequence[dict[str, Any]] | None = None
) -> Any:
    """Training curves as a matplotlib ``Figure`` (its caller closes it with
    ``matplotlib.pyplot.close``): the loss (training and validation, nats per token) and
    the validation token accuracy side by side, and, for a run with decoded validation
    (``train.valid_metrics``), its scores beside them: chrF, BLEU and TER (0..100) in one
    panel, exact match, CER and token error rate (0..1) in another.

    ``history`` holds the epoch records (``meta.history``; the training loss is each
    epoch's mean), ``validations`` every validation of the run (``meta.validations``).
    When a validation fell within an epoch (``train.valid_every``, or a stop by
    ``max_updates`` or ``max_time``) or no epoch ended, the x axis counts updates and
    shows every validation, with each epoch end a dotted line numbered on a top axis;
    otherwise it counts epochs. Without ``validations`` (a model saved before they were
    recorded) the figures are the epoch records'. The best validation (the last that
    improved the best score of ``train.early_stopping_metric``, on validation pairs: the
    one whose weights a run's directory keeps) is marked with a dashed line.

    Raises:
        Seq2SeqError: no epoch ended and no validation was made; a validation record
            without its update count or figures; matplotlib missing.
    """
    curves = _curves(history, validations)
    plt = _pyplot()
    figures = curves.figures
    on = figures[-1].get("evaluated_on", "valid")
    panels = _decoded_panels(figures[-1])
    fig, axes = plt.subplots(
        1, 2 + len(panels), figsize=(5 * (2 + len(panels)), 4), constrained_layout=True
    )
    dots = "." if len(figures) <= 100 else None
    left, right = axes[0], axes[1]
    _draw_loss(left, curves, on, dots)
    right.plot(
        curves.valid_x, [r["valid_accuracy"] for r in figures], marker=dots, color="tab:green"
    )
    right.set(
        xlabel=curves.xlabel, ylabel="token accuracy", title=f"{on} token accuracy", ylim=(0, 1)
    )
    for ax, names in zip(axes[2:], panels, strict=True):
        _draw_decoded(ax, names, curves, on, dots)
    for ax in axes:
        ax.grid(alpha=0.3)
        if curves.marked is not None:
            label = f"best validation ({curves.xlabel} {curves.marked})"
            ax.axvline(curves.marked, color="tab:red", linestyle="--", linewidth=1, label=label)
        if curves.by_update:
            _mark_epochs(ax, curves.ends)
    for ax in (left, *axes[2:]):
        ax.legend(fontsize="small")
    return fig


@dataclass(frozen=True)
class _Curves:
    """What :func:`history_figure` draws, against ``xlabel`` (``"update"`` or ``"epoch"``,
    ``by_update`` for the first): the epoch records with a training loss ``trained`` at
    ``train_x``, the records of validation figures ``figures`` at ``valid_x``, the epoch
    ends ``ends`` (``(update, epoch)``) and the best validation's x ``marked`` (None:
    none)."""

    xlabel: str
    by_update: bool
    ends: list[tuple[int, int]]
    trained: list[dict[str, Any]]
    train_x: list[int]
    figures: list[dict[str, Any]]
    valid_x: list[int]
    marked: int | None


def _curves(
    history: Sequence[dict[str, Any]], validations: Sequence[dict[str, Any]] | None
) -> _Curves:
    """The curves of ``history`` and ``validations``, as :func:`history_figure` says.

    Raises:
        Seq2SeqError: as :func:`history_figure`, but for matplotlib missing.
    """
    epochs = epoch_records(history)  # a stop's record within an epoch is no epoch
    points = _checked(validations)
    if not epochs and not points:
        raise Seq2SeqError("the model has no training history to plot")
    ends = [(r["updates"], r["epoch"]) for r in epochs if isinstance(r.get("updates"), int)]
    at_ends = {update for update, _ in ends}
    by_update = validations is not None and (
        not epochs or any(v["update"] not in at_ends for v in points)
    )
    if by_update:
        xlabel, train_x = "update", [update for update, _ in ends]
        trained = [r for r in epochs if isinstance(r.get("updates"), int)]
        figures, valid_x = points, [v["update"] for v in points]
    else:
        xlabel, trained = "epoch", epochs
        train_x = valid_x = [r["epoch"] for r in epochs]
        figures = epochs
    best = [v for v in points if v.get("best") and not v.get("at_stop")]
    marked = None
    if best:
        marked = best[-1]["update"] if by_update else best[-1]["epoch"]
    return _Curves(xlabel, by_update, ends, trained, train_x, figures, valid_x, marked)


def _decoded_panels(last: dict[str, Any]) -> list[list[str]]:
    """The decoded-validation metrics record ``last`` holds, grouped by panel: those on
    0..100 (:data:`~seq2seq_kit.metrics.PERCENT`), then those on 0..1; no empty panel."""
    decoded = [
        [name for name in METRICS if (name in PERCENT) == percent and f"valid_{name}" in last]
        for percent in (True, False)
    ]
    return [names for names in decoded if names]


def _draw_loss(ax: Any, curves: _Curves, on: str, dots: str | None) -> None:
    """The training and teacher-forced validation loss on ``ax``, validation on ``on``."""
    if curves.trained:
        epoch_mean = "training (epoch mean, at its end)" if curves.by_update else "training"
        ax.plot(
            curves.train_x,
            [r["train_loss"] for r in curves.trained],
            marker=".",
            label=epoch_mean,
        )
    ax.plot(
        curves.valid_x,
        [r["valid_loss"] for r in curves.figures],
        marker=dots,
        label=f"{on} (teacher-forced)",
    )
    ax.set(xlabel=curves.xlabel, ylabel="cross-entropy (nats / token)", title="loss")


def _draw_decoded(ax: Any, names: list[str], curves: _Curves, on: str, dots: str | None) -> None:
    """The scores ``names`` of decoded validation on ``on`` on ``ax``, one line each."""
    for name in names:
        # a record made before decoded validation was asked for has no score: a gap
        values = [r.get(f"valid_{name}", math.nan) for r in curves.figures]
        lower = " (lower is better)" if name in LOWER_IS_BETTER else ""
        ax.plot(curves.valid_x, values, marker=dots, label=LABELS[name] + lower)
    ax.set(
        xlabel=curves.xlabel,
        ylabel="sacrebleu score" if names[0] in PERCENT else "share or rate",
        title=f"{on} decoded outputs",
    )


def _checked(validations: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The validation records ``plot_history`` draws, once checked that each has its
    update count and teacher-forced figures.

    Raises:
        Seq2SeqError: naming the first record that does not.
    """
    for number, record in enumerate(validations or []):
        if not isinstance(record, dict):
            raise Seq2SeqError(f"meta.validations[{number}] is not an object")
        update = record.get("update")
        if type(update) is not int or update < 0:
            raise Seq2SeqError(
                f"meta.validations[{number}]: update is {update!r:.40}, not a count of updates"
            )
        for key in ("valid_loss", "valid_accuracy"):
            if type(record.get(key)) not in (int, float):
                raise Seq2SeqError(f"meta.validations[{number}]: {key} is missing or no number")
        epoch = record.get("epoch")
        # the best validation is marked at its epoch on a plot by epochs
        if record.get("best") and (type(epoch) is not int or epoch < 1):
            raise Seq2SeqError(
                f"meta.validations[{number}]: the best validation's epoch is {epoch!r:.40}, "
                f"not an epoch number"
            )
    return list(validations or [])


#: Above this many epoch ends, a plot by update numbers only some of them on its top axis,
#: and above the second number draws no line at each.
_EPOCH_LABELS, _EPOCH_LINES = 12, 50


def _mark_epochs(ax: Any, ends: Sequence[tuple[int, int]]) -> None:
    """Mark each epoch end (``(update, epoch)``) on an axis of updates: a dotted line (but
    for very many), and the epoch's number on a top axis (every k-th of many, the last
    always)."""
    if not ends:
        return
    if len(ends) <= _EPOCH_LINES:  # more would grey the panel over
        for update, _ in ends:
            ax.axvline(update, color="0.55", linestyle=":", linewidth=0.8, zorder=0)
    every = math.ceil(len(ends) / _EPOCH_LABELS)
    shown = [end for i, end in enumerate(ends) if i % every == 0 or i == len(ends) - 1]
    top = ax.secondary_xaxis("top")
    top.set_xticks([update for update, _ in shown], labels=[str(epoch) for _, epoch in shown])
    top.set_xlabel("end of epoch", fontsize="small")
    top.tick_params(labelsize="small")


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
