"""``seq2seq-kit import``: a model another toolkit saved, as a model directory, through an
import plugin."""

from __future__ import annotations

import argparse


def add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="make a model directory of a model another toolkit saved (e.g. marian: a "
        "Hugging Face MarianMTModel, OPUS-MT) through an import plugin",
        description="Reads --from with the importer of --format (it never unpickles), checks "
        "every config value and weight it maps, and saves a model directory at --out as "
        "training does (model.json last, every file under its SHA-256); prints the directory.",
    )
    p.add_argument("--format", required=True, help="import format (see: seq2seq-kit backends)")
    p.add_argument(
        "--from", dest="source", required=True, help="the directory of the model to import"
    )
    p.add_argument("--out", required=True, help="model directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace the model directory at --out")
    p.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    from ..importers import import_model

    print(import_model(args.format, args.source, args.out, overwrite=args.overwrite))
    return 0
