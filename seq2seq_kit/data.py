"""Training data: pairs of (source, target) text from a TSV file or a registered dataset."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

Pair = tuple[str, str]


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


def read_tsv(path: str | os.PathLike[str], limit: int | None = None) -> list[Pair]:
    """Read ``source<TAB>target`` rows; see :func:`read_tsv_rows`."""
    return [(source, target) for _, source, target in read_tsv_rows(path, limit)]


def read_tsv_rows(
    path: str | os.PathLike[str], limit: int | None = None
) -> list[tuple[int, str, str]]:
    """Read ``(line, source, target)`` rows of a ``source<TAB>target`` file; columns after
    the second (Tatoeba's attribution) are ignored, blank lines skipped. UTF-8, with or
    without BOM; LF or CRLF line ends.

    Raises:
        DataError: the file is missing or unreadable, is not UTF-8, has no rows, or a row
            has fewer than two fields (names file and 1-based line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("no such file", str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte {exc.start})", str(path), line) from None
    pairs: list[tuple[int, str, str]] = []
    for number, row in enumerate(text.split("\n"), start=1):
        row = row.removesuffix("\r")
        if not row.strip():
            continue
        fields = row.split("\t")
        if len(fields) < 2:
            raise DataError(
                f"expected source<TAB>target, found {len(fields)} field: {row[:60]!r}",
                str(path),
                number,
            )
        pairs.append((number, fields[0], fields[1]))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise DataError("no source<TAB>target rows (empty file)", str(path))
    return pairs


def split(pairs: Sequence[Pair], valid_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Shuffle the distinct sources by ``seed`` and hold out ``round(valid_fraction * n)``
    of the ``n`` distinct sources, with all their pairs, for validation.

    The order of the training pairs is kept (the trainer shuffles per epoch); a source
    that appears several times (Tatoeba's alternative translations) lands on one side only,
    so validation never scores a sentence seen in training.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    sources = sorted({s for s, _ in pairs})
    n_valid = round(valid_fraction * len(sources))
    if n_valid == 0:
        return list(pairs), []
    rng = np.random.default_rng(seed)
    held = {sources[i] for i in rng.permutation(len(sources))[:n_valid]}
    train = [p for p in pairs if p[0] not in held]
    valid = [p for p in pairs if p[0] in held]
    return train, valid


def load_dataset(source: str, limit: int | None = None, **options: Any) -> Dataset:
    """Resolve ``source``: a registered dataset name (``digits``, ``num2words``, plugins)
    or a path to a TSV file. ``options`` go to the dataset's loader.

    Raises:
        DataError: unknown name that is not a file either, a bad file, or ``options`` the
            dataset's loader does not take.
    """
    from .plugins import registry

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
        dataset = loader(**options)
        if limit:
            dataset = Dataset(dataset.pairs[:limit], dataset.name, dataset.valid_fraction)
        return dataset
    if os.path.sep in source or source.endswith((".tsv", ".txt")) or os.path.exists(source):
        rows = read_tsv_rows(source, limit)
        return Dataset(
            tuple((s, t) for _, s, t in rows),
            os.path.basename(source),
            path=source,
            lines=tuple(line for line, _, _ in rows),
        )
    raise DataError(f"unknown dataset {source!r}: not a file, and not one of {sorted(loaders)}")
