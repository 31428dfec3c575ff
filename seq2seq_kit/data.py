"""Training data: pairs of (source, target) text from a TSV file or a registered dataset,
and the line reader that TSV files and ``translate``'s standard input share.

The rules of a data file (``read_tsv_rows``); anything else is a :class:`DataError` naming
the file and the 1-based line, never a row silently dropped or merged with another:

- Bytes are UTF-8, read strictly, with or without a byte order mark at the very start.
- Lines end with LF or CRLF; the last line may lack its line end.
- A line holds at most ``[data] max_line_bytes`` bytes (its line end not counted): a longer
  one is an error, raised once that many bytes are read, so a file without line ends
  (``/dev/zero``, a disk image) costs no more memory than one line at the limit. The rules
  below are checked on the bytes read first, so a binary file is named as one.
- A line may not hold a NUL (a binary file), a carriage return other than the one of its
  CRLF end (classic Mac line ends would merge every row into one), a byte order mark
  after the start of the file (files joined together), or any other character that
  Unicode or Python's ``str.splitlines`` treats as a line break: U+000B, U+000C,
  U+001C-U+001E, U+0085, U+2028, U+2029.
- A blank line (empty, or only whitespace without a tab) is skipped.
- Any other line is a row: tab-separated fields, the first the source and the second the
  target; fields after the second (Tatoeba's attribution) are ignored. A row with fewer than
  two fields, or whose source or target is empty or only whitespace, is an error.
- Reading stops as soon as ``limit`` rows are kept, so the rest of the file is neither read
  nor checked.

Text read from standard input (``read_text_lines``) follows the same line rules; every
line, empty ones included, is one input.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import inspect
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, allocating, option

#: Default of ``[data] max_line_bytes``: far above any sentence or paragraph pair, far below
#: what a machine holds.
DEFAULT_MAX_LINE_BYTES = 1 << 20

Pair = tuple[str, str]

#: Characters a line may not hold, with why: each splits or hides rows for some reader.
_NOT_IN_A_LINE = {
    "\x00": "a NUL character (is this a binary file?)",
    "\r": "a carriage return that does not end the line (classic Mac line ends?)",
    "\x0b": "a vertical tab, a line break for some readers",
    "\x0c": "a form feed, a line break for some readers",
    "\x1c": "a file separator, a line break for some readers",
    "\x1d": "a group separator, a line break for some readers",
    "\x1e": "a record separator, a line break for some readers",
    "\x85": "a next-line character (NEL), a line break for some readers",
    "\u2028": "a line separator, a line break for some readers",
    "\u2029": "a paragraph separator, a line break for some readers",
    "\ufeff": "a byte order mark after the start of the file (files joined together?)",
}
_NOT_IN_A_LINE_RE = re.compile("[" + "".join(_NOT_IN_A_LINE) + "]")


@dataclass(frozen=True)
class Dataset:
    """Pairs plus what the dataset knows about itself.

    Attributes:
        pairs: (source, target) texts.
        name: shown in logs and saved in the model's metadata.
        valid_fraction: the dataset's default validation share (``[data] valid_fraction``
            overrides it); tiny tasks such as ``digits`` train and test on every pair.
    """

    pairs: tuple[Pair, ...]
    name: str
    valid_fraction: float = 0.1
    path: str | None = None
    lines: tuple[int, ...] = ()  # 1-based file line of each pair, for files


def read_lines(
    stream: Iterable[bytes], name: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """Yield ``(line, text)`` for each line of a binary stream, lazily, by the module's
    line rules: split on LF only, the CR of a CRLF and a byte order mark at the start
    dropped, strict UTF-8, at most ``max_line_bytes`` bytes a line.

    Args:
        stream: an open binary file, ``sys.stdin.buffer``, or any iterable of byte lines
            each ending in ``b"\\n"`` (all but possibly the last). A stream with
            ``readline`` is read at most ``max_line_bytes + 2`` bytes at a time, so a line
            without end is refused without being held.
        name: the source named in errors: a file path, or ``<stdin>``.
        max_line_bytes: the most bytes a line may hold, its line end not counted.

    Yields:
        The 1-based line number and the line's text without its line end.

    Raises:
        DataError: a line is not valid UTF-8 (names the byte), holds a character the rules
            forbid (names the column) or is longer than ``max_line_bytes`` (names
            ``data.max_line_bytes``); names ``name`` and the line.
    """
    readline = getattr(stream, "readline", None)
    # +2: room for the CRLF of a line of exactly max_line_bytes, and one byte more to see
    # that a line without end is longer
    lines = iter(functools.partial(readline, max_line_bytes + 2), b"") if readline else stream
    for number, raw in enumerate(lines, start=1):
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        too_long = len(raw) > max_line_bytes
        if too_long:
            raw = raw[:max_line_bytes]
        skipped = 0
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, skipped = raw[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
        try:
            if too_long:  # cut at the limit, maybe inside a character: no fault of the file
                text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
            else:
                text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {skipped + exc.start + 1} "
                "of the line",
                name,
                number,
            ) from None
        bad = _NOT_IN_A_LINE_RE.search(text)
        if bad is not None:
            char = bad.group()
            raise DataError(
                f"{_NOT_IN_A_LINE[char]}: U+{ord(char):04X} at column {bad.start() + 1}",
                name,
                number,
            )
        if too_long:
            raise DataError(
                f"longer than data.max_line_bytes = {max_line_bytes} bytes; raise it "
                f"({option('data.max_line_bytes', metavar='N')}) if such lines are meant",
                name,
                number,
            )
        yield number, text


def read_text_lines(
    stream: Iterable[bytes],
    name: str = "<stdin>",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> list[str]:
    """Read every line of a binary stream (``sys.stdin.buffer``) as one input text, by the
    rules of :func:`read_lines`; empty lines are kept, so each line gives one output.

    Returns:
        The lines' texts, without line ends, in order.

    Raises:
        DataError: a line is not valid UTF-8, holds a forbidden character or is longer than
            ``max_line_bytes`` bytes (names ``name`` and the 1-based line).
    """
    return [text for _, text in read_lines(stream, name, max_line_bytes)]


def read_tsv(
    path: str | os.PathLike[str],
    limit: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> list[Pair]:
    """Read ``source<TAB>target`` rows; see :func:`read_tsv_rows`."""
    rows = read_tsv_rows(path, limit, max_line_bytes)
    return [(source, target) for _, source, target in rows]


def read_tsv_rows(
    path: str | os.PathLike[str],
    limit: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> list[tuple[int, str, str]]:
    """Read ``(line, source, target)`` rows of a ``source<TAB>target`` file by the rules in
    the module docstring, streaming: reading stops once ``limit`` rows are kept, so memory
    grows with the rows kept, not with the file.

    Args:
        path: the file.
        limit: keep at most this many rows (>= 1); None: every row.
        max_line_bytes: the most bytes a line may hold (``[data] max_line_bytes``).

    Returns:
        ``(1-based line, source, target)`` for each row, in file order.

    Raises:
        DataError: the file is missing or unreadable, has no rows, or breaks a rule: not
            UTF-8, a forbidden character, a line over ``max_line_bytes``, fewer than two
            fields, an empty source or target (names file and 1-based line); ``limit``
            below 1.
    """
    _check_limit(limit)
    return list(iter_tsv_rows(path, limit, max_line_bytes))


def iter_tsv_rows(
    path: str | os.PathLike[str],
    limit: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[int, str, str]]:
    """The rows of :func:`read_tsv_rows` one at a time, as the file is read (for a corpus
    too large to hold); the same errors, raised when reading reaches them."""
    name = str(path)
    found = False
    try:
        with open(path, "rb") as stream:
            for row in _rows(read_lines(stream, name, max_line_bytes), name, limit):
                found = True
                yield row
    except FileNotFoundError:
        raise DataError("no such file", name) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", name) from None
    if not found:
        raise DataError("no source<TAB>target rows (empty file, or only blank lines)", name)


def _rows(
    lines: Iterator[tuple[int, str]], name: str, limit: int | None
) -> Iterator[tuple[int, str, str]]:
    kept = 0
    for number, text in lines:
        if "\t" not in text and not text.strip():
            continue
        fields = text.split("\t", 2)
        if len(fields) < 2:
            raise DataError(
                f"expected source<TAB>target, found 1 field: {text[:60]!r}", name, number
            )
        source, target = fields[0], fields[1]
        if not source.strip() or not target.strip():
            role = "source" if not source.strip() else "target"
            raise DataError(
                f"empty {role} field in {text[:60]!r}: every row needs a source and a "
                "target (a blank line is skipped, a line with a tab is a row)",
                name,
                number,
            )
        yield number, source, target
        kept += 1
        if kept == limit:
            return


def surrogate_at(text: str) -> int | None:
    """1-based position of the first lone surrogate in ``text`` (how Python carries bytes
    that were not valid UTF-8 in an argument or a path), or None for valid text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start + 1
    return None


def looks_like_path(source: str, base: str | os.PathLike[str] = ".") -> bool:
    """Whether a data source that is no registered dataset names a file: it has a path
    separator, a ``.tsv``/``.txt`` suffix, or exists under ``base``."""
    return (
        os.path.sep in source or source.endswith((".tsv", ".txt")) or (Path(base) / source).exists()
    )


def check_pairs(pairs: Iterable[Any], name: str = "pairs") -> tuple[Pair, ...]:
    """Pairs given in Python, held to the rules of a TSV row: each a (source, target) of two
    strings, neither empty nor only whitespace. Returns them as a tuple of tuples.

    Raises:
        DataError: naming the 1-based position of the first bad pair, or no pairs at all.
    """
    if isinstance(pairs, (str, bytes, os.PathLike, dict)) or not isinstance(pairs, Iterable):
        kind = type(pairs).__name__
        raise DataError(f"expected a sequence of (source, target) pairs, got a {kind}")
    checked = []
    for number, pair in enumerate(pairs, start=1):
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
        ):
            raise DataError(f"pair {number} is not (source, target) strings: {pair!r}", name)
        if not pair[0].strip() or not pair[1].strip():
            role = "source" if not pair[0].strip() else "target"
            raise DataError(f"pair {number} has an empty {role}: {tuple(pair)!r}", name)
        for role, text in zip(("source", "target"), pair, strict=True):
            at = surrogate_at(text)
            if at is not None:
                raise DataError(
                    f"pair {number}: the {role} is not valid text (a lone surrogate at "
                    f"character {at})",
                    name,
                )
        checked.append((pair[0], pair[1]))
    if not checked:
        raise DataError("no pairs given", name)
    return tuple(checked)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1 pair, got {limit}")


def split(pairs: Sequence[Pair], valid_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Shuffle the distinct sources by ``seed`` and hold out ``round(valid_fraction * n)``
    of the ``n`` distinct sources, with all their pairs, for validation.

    The order of the training pairs is kept (the trainer shuffles per epoch); a source
    that appears several times (Tatoeba's alternative translations) lands on one side only,
    so validation never scores a sentence seen in training.
    """
    held = held_out_sources({s for s, _ in pairs}, valid_fraction, seed)
    if not held:
        return list(pairs), []
    train = [p for p in pairs if p[0] not in held]
    valid = [p for p in pairs if p[0] in held]
    return train, valid


def held_out_sources(sources: set[str], valid_fraction: float, seed: int) -> set[str]:
    """The distinct sources :func:`split` holds out: ``round(valid_fraction * n)`` of the
    ``n`` sources, sorted by code point then permuted by ``seed``. Streaming readers that
    collect the distinct sources first use it to split as :func:`split` does.

    Raises:
        ValueError: ``valid_fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    ordered = sorted(sources)
    n_valid = round(valid_fraction * len(ordered))
    if n_valid == 0:
        return set()
    rng = np.random.default_rng(seed)
    return {ordered[i] for i in rng.permutation(len(ordered))[:n_valid]}


def load_dataset(
    source: str,
    limit: int | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    **options: Any,
) -> Dataset:
    """Resolve ``source``: a registered dataset name (``digits``, ``num2words``, plugins)
    or a path to a TSV file (read by :func:`read_tsv_rows`, which stops at ``limit``
    rows and refuses a line over ``max_line_bytes`` bytes). ``options`` go to the
    dataset's loader; ``limit`` keeps its first pairs.

    Raises:
        DataError: unknown name that is not a file either, a bad file, ``options`` the
            dataset's loader does not take, or ``limit`` below 1.
        OutOfMemory: the dataset's loader ran out of memory, naming ``data.options``.
    """
    from .plugins import registry

    _check_limit(limit)

    loaders = registry().datasets
    if source in loaders:
        loader = loaders[source]
        signature = inspect.signature(loader)
        try:
            signature.bind(**options)
        except TypeError as exc:
            takes = ", ".join(signature.parameters) or "none"
            raise DataError(
                f"data.options {options} do not fit dataset {source!r} ({exc}); "
                f"its options: {takes}"
            ) from None
        try:
            with allocating(f"data.options {options} of dataset {source!r}"):
                dataset = loader(**options)
        except (ValueError, TypeError) as exc:  # e.g. num2words' count above its range
            raise DataError(f"dataset {source!r} with options {options}: {exc}") from None
        if limit is not None and len(dataset.pairs) > limit:
            dataset = dataclasses.replace(
                dataset, pairs=dataset.pairs[:limit], lines=dataset.lines[:limit]
            )
        return dataset
    if looks_like_path(source):
        rows = read_tsv_rows(source, limit, max_line_bytes)
        return Dataset(
            tuple((s, t) for _, s, t in rows),
            os.path.basename(source),
            path=source,
            lines=tuple(line for line, _, _ in rows),
        )
    raise DataError(f"unknown dataset {source!r}: not a file, and not one of {sorted(loaders)}")
