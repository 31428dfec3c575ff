"""``seq2seq-kit export``: write a model directory in another format through a plugin."""

from __future__ import annotations

import argparse

from .options import _add_quantization


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model directory in another format (e.g. onnx) through an export plugin",
        description="Checks the model (integrity, finite weights), writes the export in a "
        "staging folder inside --out and moves its files into place, manifest.json last; "
        "prints the files written.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--format", required=True, help="export format (see: seq2seq-kit backends)")
    p.add_argument("--out", required=True, help="directory to write (new, empty, or an export)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the export at --out (only an export)"
    )
    _add_quantization(
        p,
        "write the weights quantized, the scheme recorded in the export (default: float32); "
        "the schemes each format writes: seq2seq-kit backends",
    )
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..export import export_model

    written = export_model(
        args.model, args.format, args.out, overwrite=args.overwrite, quantization=args.quantization
    )
    for path in written:
        print(path)
    return 0
