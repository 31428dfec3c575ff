"""Reading a corpus: checking it against its digests, its rows read on demand, and the
training data a run takes from it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from pydantic import ValidationError

from .. import atomic
from ..architectures import max_source_tokens
from ..config import Config, DataConfig, describe_errors
from ..data import Pair
from ..errors import ConfigError, DataError
from ..integrity import changed_fields, file_sha256, read_manifest
from ..vocab import Vocabulary
from .format import (
    CORPUS_FILE,
    CORPUS_KEYS,
    DIGESTS,
    FORMAT,
    FORMAT_VERSION,
    IDX_HEADER,
    IDX_MAGIC,
    SIDES,
    SPLITS,
)

log = logging.getLogger(__name__)


class _RowFile:
    """Reads rows of one ``.bin`` / ``.idx`` pair with ``os.pread``: a row's offset, then
    its ids, into a fresh buffer. Unlike a memory map, rows read stay out of the process's
    resident memory (they live in the page cache), so a run over a corpus of any size
    holds only the rows of its current batch. ``pread`` leaves the file position alone, so
    a forked process (a data-parallel rank) shares the descriptors safely."""

    def __init__(self, bin_path: Path, idx_path: Path, dtype: np.dtype) -> None:
        self.bin_path, self.idx_path, self.dtype = bin_path, idx_path, dtype
        self._fds: tuple[int, int] | None = None

    def fds(self) -> tuple[int, int]:
        if self._fds is None:
            self._fds = (os.open(self.bin_path, os.O_RDONLY), os.open(self.idx_path, os.O_RDONLY))
        return self._fds

    def read(self, row: int, length: int) -> np.ndarray:
        """int32 [length]: the ids of ``row``.

        Raises:
            DataError: the files end before the row does (truncated since opened).
        """
        bin_fd, idx_fd = self.fds()
        start = int.from_bytes(os.pread(idx_fd, 8, IDX_HEADER + 8 * row), "little", signed=True)
        size = length * self.dtype.itemsize
        data = os.pread(bin_fd, size, start * self.dtype.itemsize) if size else b""
        if len(data) != size:
            raise DataError(
                f"row {row} ends past the end of the file (truncated?)", str(self.bin_path)
            )
        return np.frombuffer(data, dtype=self.dtype).astype(np.int32)

    def __del__(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)


class TokenArrays(Sequence[np.ndarray]):
    """One side of one split of a corpus: row ``i`` is an int32 array of its ids (no
    BOS/EOS), read from the ``.bin`` file when asked for (:class:`_RowFile`).

    Attributes:
        lengths: int32 [len(self)] the rows' lengths, in memory (4 bytes a row), which
            :func:`seq2seq_kit.batching.batches` reads instead of the rows.
    """

    def __init__(
        self, rows: _RowFile, lengths: np.ndarray, index: np.ndarray | None = None
    ) -> None:
        self._rows, self._all_lengths, self._index = rows, lengths, index
        self.lengths = lengths if index is None else lengths[index]

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> TokenArrays: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | TokenArrays:
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"row {i} of {n}")
        row = i % n if self._index is None else int(self._index[i % n])
        return self._rows.read(row, int(self._all_lengths[row]))

    def subset(self, rows: np.ndarray) -> TokenArrays:
        """The rows at positions ``rows`` (int array) or where ``rows`` is True (bool
        array), in that order; holds their indices (8 bytes a row), not their ids."""
        rows = np.asarray(rows)
        positions = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        index = positions if self._index is None else self._index[positions]
        return TokenArrays(self._rows, self._all_lengths, index)


class DecodedPairs(Sequence[Pair]):
    """Text pairs decoded from a corpus's ids on demand (``Translator.train_pairs`` of a
    run trained from a corpus: its sample translations read a few, never all). A piece
    that became ``<unk>`` is dropped from the text, as decoding drops it."""

    def __init__(
        self, sources: TokenArrays, targets: TokenArrays, vocabs: tuple[Vocabulary, Vocabulary]
    ) -> None:
        self._sides, self._vocabs = (sources, targets), vocabs

    def __len__(self) -> int:
        return len(self._sides[0])

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        source, target = (side[i] for side in self._sides)
        return self._vocabs[0].decode(source), self._vocabs[1].decode(target)


@dataclass
class Corpus:
    """An opened corpus directory (:func:`open_corpus`).

    Attributes:
        path: the directory. doc: its ``corpus.json``.
        vocabs: the source and target vocabularies (the same object when shared).
        splits: ``{"train": (sources, targets), "valid": (sources, targets)}``.
        fingerprint: SHA-256 over the SHA-256 of every file: what a model trained on it
            records as ``data_sha256``.
    """

    path: Path
    doc: dict[str, Any]
    vocabs: tuple[Vocabulary, Vocabulary]
    splits: dict[str, tuple[TokenArrays, TokenArrays]]
    fingerprint: str

    @property
    def data(self) -> dict[str, Any]:
        """The ``[data]`` table it was made with (``source`` the data it read)."""
        return self.doc["data"]


def is_corpus(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a directory holding ``corpus.json``."""
    return os.path.isdir(source) and os.path.isfile(os.path.join(source, CORPUS_FILE))


def names_corpus(source: str) -> bool:
    """Whether a ``data.source`` is to be read as a corpus: a directory that is no
    registered dataset's name (datasets win, as in :func:`seq2seq_kit.data.load_dataset`);
    :func:`open_corpus` then says what is wrong with one that holds no corpus."""
    from ..plugins import registry

    return source not in registry().datasets and os.path.isdir(source)


def open_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Open a corpus directory written by :func:`preprocess`: every file is checked against
    the SHA-256 in ``corpus.json`` (read in chunks: nothing stays in memory), and each of
    its fields against its digest, then the row lengths are read; the ids stay on disk
    until a row is asked for.

    Raises:
        DataError: naming the file: ``corpus.json`` missing, not JSON, of another format or
            a newer version, malformed, or a field changed since it was written (naming the
            field); a file missing, truncated or altered (its SHA-256
            or size differs); an index whose header or offsets disagree with its data.
    """
    path = Path(path)
    doc_file = path / CORPUS_FILE
    if path.is_dir():
        atomic.finish(path)
    doc, version = read_manifest(
        doc_file,
        FORMAT,
        FORMAT_VERSION,
        lambda reason: DataError(reason, str(doc_file)),
        missing=f"missing; {path} is no preprocessed corpus (seq2seq-kit preprocess writes one)",
    )
    try:
        changed = changed_fields(doc) if version >= 2 or DIGESTS in doc else []
        if changed:
            raise DataError(
                f"{', '.join(changed)} changed after the corpus was written (SHA-256 differs "
                f"from {DIGESTS}); corpus.json is not for editing: run preprocess again",
                str(doc_file),
            )
        files = _verified_files(doc["files"], path, doc_file)
        vocabs = _vocabularies(doc, path)
        splits = {
            split: tuple(
                _open_rows(path, split, side, doc["counts"][split], doc["dtypes"][side])
                for side in SIDES
            )
            for split in SPLITS
        }
        DataConfig.model_validate(doc["data"])
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
        raise DataError(f"malformed ({type(exc).__name__}: {exc})", str(doc_file)) from None
    fingerprint = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()
    return Corpus(path, doc, vocabs, splits, fingerprint)  # type: ignore[arg-type]


def _verified_files(files: dict[str, str], path: Path, doc_file: Path) -> dict[str, str]:
    """``files`` (name -> SHA-256, from ``corpus.json``) once each file is checked against
    its digest; every id file must be listed, and each name be a file of ``path``.

    Raises:
        ValueError: an id file is not listed, or a name is not a plain file name.
        DataError: a file is missing or its SHA-256 differs.
    """
    unlisted = [
        f"{split}.{side}.{kind}"
        for split in SPLITS
        for side in SIDES
        for kind in ("bin", "idx")
        if f"{split}.{side}.{kind}" not in files
    ]
    if unlisted:
        raise ValueError(f"files lists no SHA-256 for {', '.join(unlisted)}")
    for name, sha in sorted(files.items()):
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"file entry {name!r} must name a file inside the directory")
        _verify(path / name, sha, doc_file)
    return files


def _verify(file: Path, sha: str, doc_file: Path) -> None:
    if not file.is_file():
        raise DataError(f"missing (listed in {doc_file.name})", str(file))
    if file_sha256(file) != sha:
        raise DataError(f"corrupted or truncated (SHA-256 differs from {doc_file})", str(file))


def _vocabularies(doc: dict[str, Any], path: Path) -> tuple[Vocabulary, Vocabulary]:
    source = Vocabulary.from_dict(doc["source_vocab"], path, "source-")
    if doc.get("shared_vocabulary"):
        return source, source
    return source, Vocabulary.from_dict(doc["target_vocab"], path, "target-")


def _open_rows(path: Path, split: str, side: str, count: int, dtype: str) -> TokenArrays:
    """The rows of ``SPLIT.SIDE.bin`` and ``.idx`` after checking they agree; the
    lengths are read into memory, the ids stay on disk."""
    if type(count) is not int or count < 0:
        raise ValueError(f"counts.{split} is {count!r}, not a row count")
    if dtype not in ("uint16", "int32"):
        raise ValueError(f"dtypes.{side} is {dtype!r}, not uint16 or int32")
    idx, bin_ = path / f"{split}.{side}.idx", path / f"{split}.{side}.bin"
    with idx.open("rb") as fh:
        header = fh.read(IDX_HEADER)
    if header[: len(IDX_MAGIC)] != IDX_MAGIC:
        raise DataError(f"not a {FORMAT} index (no {IDX_MAGIC!r} header)", str(idx))
    stored = int.from_bytes(header[len(IDX_MAGIC) :], "little")
    expected = IDX_HEADER + 8 * (count + 1) + 4 * count
    if stored != count or idx.stat().st_size != expected:
        raise DataError(
            f"holds {stored} rows in {idx.stat().st_size} bytes; {CORPUS_FILE} says {count} "
            f"rows ({expected} bytes)",
            str(idx),
        )
    with idx.open("rb") as fh:
        fh.seek(IDX_HEADER + 8 * count)
        total = int.from_bytes(fh.read(8), "little", signed=True)
        lengths = np.fromfile(fh, dtype="<i4", count=count).astype(np.int32, copy=False)
    itemsize = np.dtype(dtype).itemsize
    if bin_.stat().st_size != total * itemsize:
        raise DataError(
            f"holds {bin_.stat().st_size} bytes but its index {idx.name} ends at id {total} "
            f"({total * itemsize} bytes of {dtype})",
            str(bin_),
        )
    return TokenArrays(_RowFile(bin_, idx, np.dtype(dtype)), lengths)


# --------------------------------------------------------------------------------------
# Training from a corpus
# --------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    """What training needs of its data, from text pairs or from a corpus.

    Attributes:
        name: for ``meta["data"]`` and logs. where: named in data errors (a path or name).
        train, valid: (sources, targets) id rows: lists of lists, or :class:`TokenArrays`.
        train_pairs, valid_pairs: the text pairs (decoded on demand for a corpus).
        vocabs: source and target vocabularies. skipped: training pairs over a length cap.
        fingerprint: ``meta["data_sha256"]``. meta: further entries for ``model.json``.
    """

    name: str
    where: str
    train: tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]]
    valid: tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]]
    train_pairs: Sequence[Pair]
    valid_pairs: Sequence[Pair]
    vocabs: tuple[Vocabulary, Vocabulary]
    skipped: int
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)


def training_data(cfg: Config, saved_vocabs: tuple[Vocabulary, Vocabulary] | None) -> TrainingData:
    """Train from the corpus ``cfg.data.source`` names: its vocabularies, split and ids.
    ``cfg.data`` becomes the corpus's data table (``source`` the corpus's absolute path), so
    that ``model.json`` records what the model was trained on. A Transformer's
    ``model.max_positions`` skips longer pairs, found from the length arrays.

    Raises:
        ConfigError: a ``[data]`` key set (in the file, by a flag or assignment) to another
            value than the corpus was made with, naming it and both values.
        DataError: a damaged corpus (see :func:`open_corpus`), a resumed run whose
            vocabularies differ from the corpus's, or no training pairs left.
    """
    path = Path(cfg.data.source).resolve()
    corpus = open_corpus(path)
    made = corpus.data
    conflicts = [
        f"data.{key} is {getattr(cfg.data, key)!r} but the corpus was made with {made[key]!r}"
        for key in CORPUS_KEYS
        if key in cfg.data.model_fields_set and not _same(key, getattr(cfg.data, key), made[key])
    ]
    if conflicts:
        raise ConfigError(
            f"data.source = {str(path)!r} is a preprocessed corpus: "
            + "; ".join(conflicts)
            + "; leave these keys out (the corpus fixes them) or preprocess again with them"
        )
    try:
        cfg.data = DataConfig.model_validate({**made, "source": str(path)})
    except ValidationError as exc:
        raise DataError(f"{CORPUS_FILE}: data: {describe_errors(exc)}", str(path)) from None
    if corpus.doc.get("split_seed") is not None and corpus.doc["split_seed"] != cfg.train.seed:
        log.info(
            "the corpus's validation split was drawn with seed %s (train.seed is %s)",
            corpus.doc["split_seed"],
            cfg.train.seed,
        )
    vocabs = corpus.vocabs
    if saved_vocabs is not None and (saved_vocabs[0] != vocabs[0] or saved_vocabs[1] != vocabs[1]):
        raise DataError(
            "the corpus's vocabularies differ from the saved run's (preprocessed again "
            "since?); a resumed run trains on the data it started with",
            str(path),
        )
    train, valid = corpus.splits["train"], corpus.splits["valid"]
    skipped = int(corpus.doc.get("skipped_too_long", 0))
    positions = max_source_tokens(cfg.model)
    if positions is not None:
        train, dropped = _within(train, positions, "training")
        skipped += dropped
        valid, _ = _within(valid, positions, "validation")
    if not len(train[0]):
        raise DataError("no training pairs left after the length caps", str(path))
    return TrainingData(
        name=f"{corpus.doc.get('name', path.name)} (corpus)",
        where=str(path),
        train=train,
        valid=valid,
        train_pairs=DecodedPairs(*train, vocabs),
        valid_pairs=DecodedPairs(*valid, vocabs),
        vocabs=vocabs,
        skipped=skipped,
        fingerprint=corpus.fingerprint,
        meta={"corpus": {"path": str(path), "sha256": corpus.fingerprint}},
    )


def _same(key: str, value: Any, made: Any) -> bool:
    if key == "valid" and isinstance(value, str) and isinstance(made, str):
        return os.path.realpath(value) == os.path.realpath(made)
    return value == made


def _within(
    rows: tuple[TokenArrays, TokenArrays], positions: int, which: str
) -> tuple[tuple[TokenArrays, TokenArrays], int]:
    """The pairs a Transformer of ``max_positions`` holds (the target with its BOS), and
    how many it skips; logged as training from text logs them."""
    keep = (rows[0].lengths <= positions) & (rows[1].lengths <= positions - 1)
    dropped = int(len(keep) - keep.sum())
    if not dropped:
        return rows, 0
    log.info(
        "skipped %d of %d %s pairs longer than model.max_positions = %d (the target with its BOS)",
        dropped,
        len(keep),
        which,
        positions,
    )
    return (rows[0].subset(keep), rows[1].subset(keep)), dropped
