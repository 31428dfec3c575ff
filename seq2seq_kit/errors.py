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


class CapabilityError(BackendError):
    """A decoding option the backend running the model does not declare the capability of
    (beam search without ``beam``; sampling, a prefix or an output control asked of an
    engine with its own search that does not map it).

    Attributes:
        option: the ``[decode]`` key (a request's field) that asked for it.
    """

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


class ExportError(Seq2SeqError):
    """A model cannot be exported: an unknown format, an output in the way, or something
    the format cannot express (named)."""


class ModelImportError(Seq2SeqError):
    """A model of another toolkit cannot be imported: an unknown format, a missing or
    unsafe file, or a setting the import cannot express (named with its file)."""


class ConfigError(Seq2SeqError):
    """A configuration file or option is invalid (names file and key)."""


class OptionError(ConfigError):
    """A decoding option valid alone that does not fit the model it decodes with
    (``min_length`` over the length cap, a banned token the target vocabulary lacks).

    Attributes:
        option: the ``[decode]`` key, with its index for a list's item
            (``banned_tokens[1]``).
    """

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


class EnsembleError(ConfigError):
    """Models that cannot decode as one ensemble (vocabularies or tokenizers that differ,
    weights that are not one positive number per model), naming the models; or a use of an
    ensemble that needs one model (saving it)."""


class PrefixError(Seq2SeqError, ValueError):
    """A target prefix that cannot be forced (a piece the target vocabulary lacks, a
    banned token, more tokens than the length cap, no source text).

    Attributes:
        reason: what is wrong, without the line. line: the 1-based input line, or None.
    """

    def __init__(self, reason: str, line: int | None):
        where = f"input line {line}: " if line is not None else ""
        super().__init__(f"{where}target prefix: {reason}")
        self.reason, self.line = reason, line


class ConstraintError(Seq2SeqError, ValueError):
    """A lexical constraint that cannot be searched for (a piece the target vocabulary
    lacks, a banned token, an empty phrase, no source text), or constraints not one list
    per input.

    Attributes:
        reason: what is wrong, without the line. line: the 1-based input line, or None.
        number: the 1-based number of the constraint among its line's, or None.
    """

    def __init__(self, reason: str, line: int | None, number: int | None = None):
        where = f"input line {line}: " if line is not None else ""
        which = f"constraint {number}" if number is not None else "constraints"
        super().__init__(f"{where}{which}: {reason}")
        self.reason, self.line, self.number = reason, line, number


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


class OutOfMemory(Seq2SeqError):
    """An allocation failed: a size asked for more memory than this machine (or its
    accelerator) has. Names the settings that decide the size, so that the run can be
    refused again with them lowered.

    Attributes:
        settings: the settings named, e.g. ``"model.hidden_size = 65536, ..."``.
        why: the failed allocation's error, as its class name and first line (may be
            empty).
    """

    def __init__(self, settings: str, why: str = ""):
        super().__init__(f"out of memory{f' ({why})' if why else ''}: lower {settings}")
        self.settings, self.why = settings, why


#: Messages by which frameworks say they ran out of memory, in errors of their own classes
#: (matched as text, so that the core imports no framework): CUDA and PyTorch's CPU
#: allocator, XLA (JAX, TensorFlow), TensorFlow, ONNX Runtime, C++ ``std::bad_alloc``,
#: ENOMEM, and NumPy's shapes beyond any memory.
_OUT_OF_MEMORY_TEXT = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "resource_exhausted",
    "oom when allocating",
    "failed to allocate memory",
    "bad_alloc",
    "maximum allowed dimension exceeded",
    "array is too big",
)
#: Classes frameworks raise for it (PyTorch's ``OutOfMemoryError``, TensorFlow's
#: ``ResourceExhaustedError``), by name for the same reason.
_OUT_OF_MEMORY_CLASSES = frozenset({"OutOfMemoryError", "ResourceExhaustedError"})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):  # NumPy's failed allocations too
        return True
    if isinstance(exc, OverflowError):  # a size past what C takes; not float arithmetic's
        return any(word in str(exc) for word in ("too large", "too big", "exceed", "convert"))
    if any(cls.__name__ in _OUT_OF_MEMORY_CLASSES for cls in type(exc).__mro__):
        return True
    if isinstance(exc, (RuntimeError, ValueError, OSError)) or type(exc).__module__ not in (
        "builtins",
        __name__,
    ):
        text = str(exc).lower()
        return any(marker in text for marker in _OUT_OF_MEMORY_TEXT)
    return False


def out_of_memory(exc: BaseException, settings: str) -> OutOfMemory | None:
    """``exc`` as an :class:`OutOfMemory` naming ``settings`` when it is a failed
    allocation of Python, NumPy or a backend's framework (a ``MemoryError``, an
    ``OverflowError`` of a size, PyTorch's or TensorFlow's own errors, found along the
    chain of causes that Keras and others wrap them in); None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, Seq2SeqError):
            return None
        if _is_out_of_memory(current):
            return OutOfMemory(settings, _first_line(current))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def allocation_failure(exc: BaseException) -> str | None:
    """The failed allocation behind ``exc``, as its class name and first line
    (``"RuntimeError: DefaultCPUAllocator: can't allocate memory: ..."``), when ``exc`` is
    one (:func:`out_of_memory`'s kinds) or an :class:`OutOfMemory` raised for one, found
    along the chain of causes; None for any other error. For a caller that answers the
    failure itself in its own terms (the server names a request's fields, not
    ``[decode]`` settings)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    wrapped: list[str] = []  # the OutOfMemory errors' own accounts, if none deeper is found
    while current is not None and id(current) not in seen:
        if isinstance(current, OutOfMemory):
            wrapped.append(current.why)
        elif isinstance(current, Seq2SeqError):
            break
        elif _is_out_of_memory(current):
            return _first_line(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if not wrapped:
        return None
    return next((why for why in wrapped if why), "out of memory")


@contextlib.contextmanager
def allocating(settings: str | Callable[[], str]) -> Iterator[None]:
    """Run the block; a failed allocation in it (see :func:`out_of_memory`) becomes an
    :class:`OutOfMemory` naming ``settings`` (or what the callable returns then).

    Raises:
        OutOfMemory: naming the settings; the CLI exits 2 with it.
    """
    try:
        yield
    except Seq2SeqError:
        raise
    except Exception as exc:
        error = out_of_memory(exc, settings() if callable(settings) else settings)
        if error is None:
            raise
        raise error from exc
