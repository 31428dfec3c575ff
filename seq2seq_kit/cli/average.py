"""``seq2seq-kit average``: a model whose weights are the mean of several checkpoints'."""

from __future__ import annotations

import argparse


def add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="write a model whose weights are the element-wise mean of N checkpoints': the "
        "last or best N a model directory keeps (train.keep_last, keep_best), or those named",
        description="Checks that the checkpoints share the architecture and both "
        "vocabularies (naming the key or side that differs), averages each float32 tensor "
        "(summed in float64, divided by N, rounded to float32) and saves a model directory at "
        "--out as training does; model.json records the checkpoints averaged (paths and "
        "weights' SHA-256). Prints the directory.",
    )
    p.add_argument(
        "--model", metavar="DIR", help="model directory whose kept checkpoints to average"
    )
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--last",
        type=_count,
        metavar="N",
        help="the N checkpoints of --model with the most updates",
    )
    chosen.add_argument(
        "--best",
        type=_count,
        metavar="N",
        help="the N checkpoints of --model with the best validation score "
        "(train.early_stopping_metric)",
    )
    chosen.add_argument(
        "--inputs", nargs="+", metavar="DIR", help="model directories to average (no --model)"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="model directory to write (new or empty)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the model directory at --out")
    p.set_defaults(run=run_average)


def _count(text: str) -> int:
    """argparse ``type=``: a count of checkpoints, >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of checkpoints must be >= 1")
    return value


def run_average(args: argparse.Namespace) -> int:
    from ..averaging import average

    print(
        average(
            args.model,
            last=args.last,
            best=args.best,
            inputs=args.inputs,
            out=args.out,
            overwrite=args.overwrite,
        )
    )
    return 0
