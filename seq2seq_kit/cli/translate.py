"""``seq2seq-kit translate``: translate TEXT arguments, or standard input line by line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .options import _add_config_flags, _flag_values


def add_translate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate TEXT arguments, or stdin line by line",
        description="One output line per input (n-best > 1: N lines 'input number<TAB>rank<TAB>"
        "score<TAB>text' per input). Empty input lines give empty output lines. Decoding "
        "flags default to the model's saved [decode] settings.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--backend", help="backend to run the model with")
    _add_config_flags(p, "decode")
    _add_config_flags(p, "data", ["max_line_bytes"])
    p.add_argument("text", nargs="*", help="inputs; none: read stdin")
    p.set_defaults(run=run_translate)


def _read_inputs(texts: Sequence[str], max_line_bytes: int | None) -> list[str]:
    from ..config import DEFAULT_MAX_LINE_BYTES
    from ..data import read_text_lines
    from ..errors import ConfigError, DataError

    if texts:
        for number, text in enumerate(texts, start=1):
            _check_utf8(text, f"TEXT argument {number}")
        return list(texts)
    if sys.stdin is None:
        raise ConfigError("no TEXT arguments and no standard input to read")
    # The bytes, not the locale's decoding: stdin follows the data files' UTF-8 and line rules.
    try:
        return read_text_lines(
            sys.stdin.buffer, "<stdin>", max_line_bytes or DEFAULT_MAX_LINE_BYTES
        )
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", "<stdin>") from None


def _check_utf8(text: str, what: str) -> None:
    """Arguments reach Python with undecodable bytes as surrogates: refuse them as the
    stdin and file readers refuse invalid UTF-8."""
    from ..data import surrogate_at
    from ..errors import DataError

    at = surrogate_at(text)
    if at is not None:
        raise DataError(f"{what} is not valid UTF-8 (character {at})")


def run_translate(args: argparse.Namespace) -> int:
    from ..api import load

    translator = load(args.model, backend=args.backend)
    options = translator.decode_config(**_flag_values(args).get("decode", {}))
    texts = _read_inputs(args.text, getattr(args, "data.max_line_bytes"))
    results = translator.decode_texts(texts, options)
    out = sys.stdout
    for line_no, hyps in enumerate(results, start=1):
        if any(h.truncated for h in hyps):
            print(
                f"warning: input line {line_no}: output truncated at "
                f"{translator.decoding_limit(options.max_length)} tokens (no end of sequence)",
                file=sys.stderr,
            )
        if options.n_best == 1:
            out.write(hyps[0].text + "\n")
        else:
            for rank, h in enumerate(hyps, start=1):
                out.write(f"{line_no}\t{rank}\t{h.score:.4f}\t{h.text}\n")
    return 0
