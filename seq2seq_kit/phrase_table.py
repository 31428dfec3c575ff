"""The phrase table of ``[decode] replace_unk_table``: what an output ``<unk>`` becomes when
the source token it is aligned to has an entry (OpenNMT's ``-phrase_table``).

The format: a UTF-8 text file read by the line rules of data files
(:func:`seq2seq_kit.data.read_lines`), one entry a line, ``source token<TAB>target text``:

- the source token is one token as the source tokenizer spells its text (a character for
  ``char``, a word for ``word``, a SentencePiece piece without its ``▁`` mark), so it holds
  no whitespace;
- the target text is what replaces the ``<unk>`` (several words are allowed), not empty;
- a blank line is skipped; a source token listed twice, a line with no TAB or with a second
  one, an empty field or a source token holding whitespace is an error naming the file and
  line.

Both fields are NFC-normalised, as every text the vocabularies read.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from .data import read_lines
from .errors import DataError
from .vocab import normalize


@dataclass(frozen=True, eq=False)
class PhraseTable:
    """A phrase table read from ``path``: ``entries`` maps a source token's text to its
    target text; ``sha256`` is the SHA-256 (hex) of the bytes read, which a model
    directory's copy of it is checked against (:mod:`seq2seq_kit.checkpoint`). Two tables
    are equal only if they are the same object (one per file version:
    :func:`load_phrase_table`), so that comparing searches stays cheap."""

    path: str
    entries: Mapping[str, str]
    sha256: str

    def get(self, source: str, default: str) -> str:
        """The target text of ``source``, else ``default``."""
        return self.entries.get(source, default)


def read_phrase_table(path: str | os.PathLike[str]) -> PhraseTable:
    """The entries of the phrase table at ``path`` (format: the module's documentation).

    Raises:
        DataError: the file is missing, unreadable or empty (no entry), or a line breaks
            the format, naming the file and the 1-based line.
    """
    name = os.fspath(path)
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        with open(path, "rb") as file:
            stream = _Hashing(file)
            for number, text in read_lines(stream, name):
                if not text.strip():
                    continue
                fields = text.split("\t")
                if len(fields) != 2:
                    raise DataError(
                        f"{len(fields) - 1} TABs in {text[:60]!r}: a phrase table line is "
                        f"'source token<TAB>target text'",
                        name,
                        number,
                    )
                source, target = normalize(fields[0]), normalize(fields[1])
                if not source or any(c.isspace() for c in source):
                    raise DataError(
                        f"source token {source!r}: one token, not empty and without "
                        f"whitespace (it is matched against a single source token)",
                        name,
                        number,
                    )
                if not target.strip():
                    raise DataError(f"empty target text for source token {source!r}", name, number)
                if source in lines:
                    raise DataError(
                        f"source token {source!r} listed twice (first on line "
                        f"{lines[source]}): which target text is meant is a guess",
                        name,
                        number,
                    )
                entries[source], lines[source] = target, number
    except FileNotFoundError:
        raise DataError("no such file (decode.replace_unk_table)", name) from None
    except IsADirectoryError:
        raise DataError("a directory, not a phrase table file", name) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", name) from None
    if not entries:
        raise DataError("no 'source token<TAB>target text' lines (an empty phrase table)", name)
    return PhraseTable(name, entries, stream.digest.hexdigest())


class _Hashing:
    """A binary file's ``readline`` that hashes what it returns: read to its end, the
    SHA-256 of the whole file, taken in the one pass that parses it."""

    def __init__(self, file: BinaryIO):
        self.file, self.digest = file, hashlib.sha256()

    def readline(self, size: int = -1) -> bytes:
        line = self.file.readline(size)
        self.digest.update(line)
        return line


def load_phrase_table(path: str | os.PathLike[str]) -> PhraseTable:
    """:func:`read_phrase_table`, read once per version of the file (its path, size and
    modification time): a server checks its options for every request.

    Raises:
        DataError: as :func:`read_phrase_table`.
    """
    name = os.fspath(path)
    try:
        stat = os.stat(name)
    except FileNotFoundError:
        raise DataError("no such file (decode.replace_unk_table)", name) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", name) from None
    return _cached(os.path.abspath(name), name, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached(key: str, name: str, size: int, mtime_ns: int) -> PhraseTable:
    return read_phrase_table(name)
