"""``seq2seq-kit plot``: training curves and an attention heatmap, as PNG."""

from __future__ import annotations

import argparse
from typing import Any

from .translate import _check_utf8


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="training curves, and an attention heatmap for an input, as PNG"
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument(
        "--input",
        help="text whose attention to plot: an RNN's (model.attention not none), or a "
        "Transformer's top decoder layer's cross-attention averaged over heads",
    )
    p.add_argument("--backend", help="backend to run the model with")
    p.add_argument("--out-dir", help="where to write the PNGs (default: the model directory)")
    p.set_defaults(run=run_plot)


def _attention_kind(spec: Any) -> str:
    """What an attention heatmap of ``spec``'s model shows, in a few words."""
    from ..architectures import architecture_of

    return architecture_of(spec).attention(spec)


def run_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..api import load
    from ..errors import ConfigError
    from ..plots import plot_attention, plot_history
    from ..trainer import epoch_records

    translator = load(args.model, backend=args.backend)
    # Every refusal comes before anything is written: a half-done plot run is no success.
    attention = None
    if args.input is not None:
        _check_utf8(args.input, "--input")
        if not args.input.strip():
            raise ConfigError("--input: empty; give the text whose attention to plot")
        if not translator.model.spec.has_attention:
            raise ConfigError(
                f"--input: {args.model} has no attention (model.attention = none), so there is "
                f"no heatmap to plot; leave out --input to plot the training curves alone"
            )
        attention = translator.attention(args.input)
    epochs = epoch_records(translator.history)  # a stop within an epoch is no epoch
    curves = bool(epochs or translator.validations)
    if attention is None and not curves:
        raise ConfigError(
            f"{args.model}: no epoch has ended and no validation was made, so there are no "
            "training curves to plot; give --input to plot an attention heatmap"
        )
    if args.out_dir == "":
        raise ConfigError("--out-dir: empty path")
    out_dir = Path(args.out_dir or args.model)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir: {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if curves:
        path = plot_history(translator.history, out_dir / "curves.png", translator.validations)
        print(f"wrote {path}")
    else:  # stopped before its first validation (max_updates, max_time, an interrupt)
        print("no training curves: no epoch has ended and no validation was made")
    if attention is not None:
        source, output, weights = attention
        what = _attention_kind(translator.model.spec)
        path = plot_attention(source, output, weights, out_dir / "attention.png", title=what)
        print(f"wrote {path} ({what}: {len(output)} output x {len(source)} source tokens)")
    return 0
