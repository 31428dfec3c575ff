"""Errors that name what was wrong and where. The CLI prints them without a traceback.

A message that advises an option words it for the interface that raised it
(:func:`option`): ``resume='model'`` called from Python, ``--resume model`` on the command
line, which spells options as flags for as long as a command runs (:func:`flags`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

#: How the command line spells an option as a flag while one of its commands runs; None
#: outside it, where options are Python arguments and config keys.
_FLAG_OF: ContextVar[Callable[[str], str] | None] = ContextVar("seq2seq_kit_flags", default=None)


@contextlib.contextmanager
def flags(flag_of: Callable[[str], str]) -> Iterator[None]:
    """While the block runs, :func:`option` spells an option as the flag ``flag_of(name)``
    (the command line's ``--resume`` for ``"resume"``, ``--epochs`` for
    ``"train.epochs"``)."""
    token = _FLAG_OF.set(flag_of)
    try:
        yield
    finally:
        _FLAG_OF.reset(token)


def option(name: str, value: Any = True, *, metavar: str | None = None) -> str:
    """Option ``name`` set to ``value`` (``None``: the option alone; or a ``metavar``
    placeholder), as the interface running now takes it. ``name`` is a Python argument
    (``"resume"``, ``"overwrite"``) or a config key (``"train.patience"``).

    From Python: ``resume='model'``, ``overwrite=True``, ``epochs=N``, ``train.patience``.
    On the command line (:func:`flags`): ``--resume model``, ``--overwrite``, ``--epochs N``,
    ``--patience``.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    flag_of = _FLAG_OF.get()
    if flag_of is not None:
        flag = flag_of(name)
        shown = metavar or ("" if value is None or value is True else value)
        return f"{flag} {shown}" if shown else flag
    if value is None and metavar is None:
        return name
    if "." in name:  # a config key, as a config file sets it
        shown = metavar or (str(value).lower() if isinstance(value, bool) else repr(value))
        return f"{name} = {shown}"
    return f"{name}={metavar or repr(value)}"


class Seq2SeqError(Exception):
    """Base of every error the toolkit raises on bad input.

    Attributes:
        exit_code: the CLI's exit status for it (2: bad input or a refused run).
    """

    exit_code = 2


class DataError(Seq2SeqError):
    """A data file is missing, empty or has a malformed row (names file and line)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path, self.line = path, line


class UnknownTokenError(Seq2SeqError, ValueError):
    """An input token (character or word) is not in the model's source vocabulary."""

    def __init__(self, token: str, position: int, text: str, line: int | None, tokenizer: str):
        where = f"input line {line}, " if line is not None else ""
        super().__init__(
            f"{where}{describe_token(token, position, tokenizer)} in {text!r} was never seen in "
            f"training; pass {option('unknown', 'replace')} to map it to <unk>"
        )
        self.token, self.position, self.line = token, position, line
        self.kind = tokenizer


class InputTooLongError(Seq2SeqError, ValueError):
    """An input has more source tokens than the model can encode (a Transformer's
    ``max_positions``).

    Attributes:
        length: the input's source tokens. limit: the most the model takes.
        line: the 1-based input line, or None.
    """

    def __init__(self, length: int, limit: int, line: int | None):
        where = f"input line {line} has" if line is not None else "the input has"
        super().__init__(
            f"{where} {length} source tokens but the model takes at most {limit} "
            f"(model.max_positions); split it into shorter inputs"
        )
        self.length, self.limit, self.line = length, limit, line


def describe_token(token: str, position: int, tokenizer: str) -> str:
    """``character 2: 'a' (U+0061)``, ``word 3: 'here'`` or ``piece 1: '▁Hi'``: a code point
    only where the token is one character."""
    kind = {"char": "character", "word": "word"}.get(tokenizer, "piece")
    code = f" (U+{ord(token):04X})" if len(token) == 1 else ""
    return f"{kind} {position}: {token!r}{code}"


class CheckpointError(Seq2SeqError):
    """A model directory is missing, incomplete, corrupted or from a newer format."""


class BackendError(Seq2SeqError):
    """A backend is unknown, not installed, or failed to load."""


class ExportError(Seq2SeqError):
    """A model cannot be exported: an unknown format, an output in the way, or something
    the format cannot express (named)."""


class ConfigError(Seq2SeqError):
    """A configuration file or option is invalid (names file and key)."""


class TrainingError(Seq2SeqError):
    """Training cannot go on (a non-finite loss, no training pairs); names epoch and step
    where it happened. The last checkpoint written before it stays loadable."""


class TrainingInterrupted(Seq2SeqError):
    """SIGINT or SIGTERM stopped training after the checkpoint was written; the CLI exits
    128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report it."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
