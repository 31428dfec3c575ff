"""``seq2seq-kit translate``: translate TEXT arguments, or standard input line by line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .models import add_model_flags, load_models
from .options import _add_config_flags, _flag_values

if TYPE_CHECKING:
    from ..decoding import Hypothesis


def add_translate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate TEXT arguments, or stdin line by line",
        description="One output line per input (n-best > 1, or num-samples > 1 with "
        "--sampling: N lines 'input number<TAB>rank<TAB>score<TAB>text' per input). Empty "
        "input lines give empty output lines. With --alignments each line ends with one "
        "more TAB column of 'i-j' pairs (source position i, output position j). An input "
        "'source<TAB>prefix' forces each output to start with the target prefix and decodes "
        "on from it (the output and its score include the prefix); with --constraints, an "
        "input 'source<TAB>phrase<TAB>phrase...' makes every output hold each target phrase. "
        "Decoding flags default to the model's saved [decode] settings.",
    )
    add_model_flags(p)
    p.add_argument(
        "--constraints",
        action="store_true",
        help="every TAB-separated field after an input's source is a lexical constraint, a "
        "target phrase each output must hold (constrained beam search; no target prefix then)",
    )
    _add_config_flags(p, "decode")
    _add_config_flags(p, "data", ["max_line_bytes"])
    p.add_argument(
        "text",
        nargs="*",
        help="inputs ('source', 'source<TAB>target prefix', or with --constraints "
        "'source<TAB>phrase<TAB>...'); none: read stdin",
    )
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


def _split_prefixes(lines: list[str], from_stdin: bool) -> tuple[list[str], list[str] | None]:
    """The sources and target prefixes of inputs ``source`` or ``source<TAB>prefix`` (a
    source never holds a TAB: a model is trained on TSV rows); prefixes None when no input
    has one.

    Raises:
        DataError: an input with more than one TAB, naming its line.
    """
    from ..errors import DataError

    if not any("\t" in line for line in lines):
        return lines, None
    sources, prefixes = [], []
    for number, line in enumerate(lines, start=1):
        source, tab, prefix = line.partition("\t")
        if "\t" in prefix:
            what = ("<stdin>", number) if from_stdin else (f"TEXT argument {number}", None)
            raise DataError(
                f"{line.count(chr(9))} TABs: an input is 'source' or 'source<TAB>target prefix'",
                *what,
            )
        sources.append(source)
        prefixes.append(prefix)
    return sources, prefixes


def _split_constraints(lines: list[str]) -> tuple[list[str], list[list[str]] | None]:
    """The sources and lexical constraints of inputs ``source<TAB>phrase<TAB>phrase...``
    (fairseq's ``--constraints`` input); constraints None when no input has one. An empty
    field is refused by :func:`seq2seq_kit.decoding.encode_constraints`, naming it."""
    if not any("\t" in line for line in lines):
        return lines, None
    sources, constraints = [], []
    for line in lines:
        source, *phrases = line.split("\t")
        sources.append(source)
        constraints.append(phrases)
    return sources, constraints


def _check_utf8(text: str, what: str) -> None:
    """Arguments reach Python with undecodable bytes as surrogates: refuse them as the
    stdin and file readers refuse invalid UTF-8."""
    from ..data import surrogate_at
    from ..errors import DataError

    at = surrogate_at(text)
    if at is not None:
        raise DataError(f"{what} is not valid UTF-8 (character {at})")


def run_translate(args: argparse.Namespace) -> int:
    translator = load_models(args)
    options = translator.decode_config(**_flag_values(args).get("decode", {}))
    lines = _read_inputs(args.text, getattr(args, "data.max_line_bytes"))
    if args.constraints:
        (texts, constraints), prefixes = _split_constraints(lines), None
    else:
        (texts, prefixes), constraints = _split_prefixes(lines, from_stdin=not args.text), None
    results = translator.decode_texts(texts, options, prefixes, constraints)
    out = sys.stdout
    cap = translator.decoding_limit(options.max_length)
    for line_no, hyps in enumerate(results, start=1):
        if any(h.truncated for h in hyps):
            print(
                f"warning: input line {line_no}: output truncated at {cap} tokens (no end of "
                f"sequence)",
                file=sys.stderr,
            )
        missed = [rank for rank, h in enumerate(hyps, start=1) if not h.constraints_met]
        if missed:
            which = (
                "the output lacks"
                if options.outputs_per_input == 1
                else f"the outputs ranked {', '.join(map(str, missed))} lack"
            )
            print(
                f"warning: input line {line_no}: {which} a constraint (none holding every "
                f"one was found within {cap} tokens)",
                file=sys.stderr,
            )
        if options.outputs_per_input == 1:
            out.write(hyps[0].text + _alignment_column(hyps[0]) + "\n")
        else:
            for rank, h in enumerate(hyps, start=1):
                out.write(f"{line_no}\t{rank}\t{h.score:.4f}\t{h.text}{_alignment_column(h)}\n")
    return 0


def _alignment_column(hyp: Hypothesis) -> str:
    """The alignment of ``hyp`` as one more TAB column of ``i-j`` pairs separated by spaces
    (Moses and fast_align's order: source position, then output position); ``""``
    without alignments."""
    if hyp.alignment is None:
        return ""
    return "\t" + " ".join(f"{i}-{j}" for i, j in hyp.alignment)
