"""The binarized corpus: training data tokenized once into memory-mapped id arrays.

``seq2seq-kit preprocess`` (:func:`preprocess`) reads the ``[data]`` a training run would
read (source, valid or valid_fraction, limit, tokenizers, shared_vocabulary, the length
caps), splits it as training does, trains the tokenizers, builds the vocabularies and
writes, per split (``train``, ``valid``) and side (``source``, ``target``), the layout of
fairseq's ``MMapIndexedDataset``:

- ``SPLIT.SIDE.bin``: every row's ids back to back, one flat array of ``uint16`` (when the
  side's vocabulary has at most 65,536 ids) or ``int32``;
- ``SPLIT.SIDE.idx``: the 8-byte magic ``S2SKIDX1``, the row count ``n`` as a little-endian
  ``uint64``, ``n + 1`` ``int64`` offsets (in ids) into the ``.bin``, then ``n`` ``int32``
  row lengths;
- the tokenizers' files (``source-*``, ``target-*``, as in a model directory) and
  ``corpus.json``: format and version, the data config it was made with, row counts,
  dtypes, both vocabularies, the SHA-256 of every file and, in ``fields_sha256``, of each
  of its own fields.

``[data] source = "DIR"`` trains from it (:func:`training_data`): the corpus's vocabularies
and split, rows read through :class:`TokenArrays` (a row is a slice of the memory map, read
when a batch needs it), so a run holds an epoch's index permutation (8 bytes a pair) and
its batches, not the corpus. The corpus is written into a hidden staging folder inside
``DIR`` and its files are moved into place once all are complete
(:mod:`seq2seq_kit.atomic`): an interrupted preprocess leaves the old corpus or the new
one, and ``DIR`` may be a mount point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, overload

import numpy as np
from pydantic import ValidationError

from . import atomic, prepare
from .config import Config, DataConfig, describe_errors
from .data import Pair, held_out_sources, iter_tsv_rows, looks_like_path
from .errors import ConfigError, DataError, option
from .integrity import changed_fields, field_digests, file_sha256, read_json
from .tokenizers import CharTokenizer, Tokenizer
from .version import __version__
from .vocab import UNK, Vocabulary, normalize

log = logging.getLogger(__name__)

FORMAT = "seq2seq-kit-corpus"
#: 2: ``fields_sha256`` covers every field of ``corpus.json``.
FORMAT_VERSION = 2
DIGESTS = "fields_sha256"
CORPUS_FILE = "corpus.json"
SPLITS = ("train", "valid")
SIDES = ("source", "target")
IDX_MAGIC = b"S2SKIDX1"
_HEADER = len(IDX_MAGIC) + 8
#: ``[data]`` keys the corpus was made with; a training run may not set them otherwise.
CORPUS_KEYS = tuple(k for k in DataConfig.model_fields if k != "source")
#: Tokenizers with nothing to learn: no pass over the data is made to train them.
_UNTRAINED = ("char", "word")
#: The most training pairs a learned tokenizer (SentencePiece) trains on: a uniform sample
#: of the training pairs (reservoir sampling, seeded by ``train.seed``) beyond that; below
#: it, every training pair in order, as training from the text does. SentencePiece itself
#: samples a million sentences by default (``input_sentence_size``).
SAMPLE_PAIRS = 1_000_000
#: Rows encoded together (one NFC pass and one lookup per block for characters).
_BLOCK = 1 << 16
#: Ids read at once when counting and renumbering the temporary id files (16 MB of int32,
#: about 50 MB at the peak of a renumbering): what bounds preprocess's memory besides the
#: row lengths and the pieces.
_CHUNK = 1 << 22


# --------------------------------------------------------------------------------------
# Read side
# --------------------------------------------------------------------------------------


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
        start = int.from_bytes(os.pread(idx_fd, 8, _HEADER + 8 * row), "little", signed=True)
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
    from .plugins import registry

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
    try:
        doc = read_json(doc_file)
    except FileNotFoundError:
        raise DataError(
            f"missing; {path} is no preprocessed corpus (seq2seq-kit preprocess writes one)",
            str(doc_file),
        ) from None
    except ValueError as exc:
        raise DataError(f"not valid JSON ({exc})", str(doc_file)) from None
    except OSError as exc:
        raise DataError(f"cannot read it ({exc.strerror or exc})", str(doc_file)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} file", str(doc_file))
    version = doc.get("format_version")
    if type(version) is not int or version < 1:
        raise DataError(f"format_version {version!r} is not a version", str(doc_file))
    if version > FORMAT_VERSION:
        raise DataError(
            f"format version {version!r} is newer than this seq2seq-kit reads "
            f"({FORMAT_VERSION}); upgrade seq2seq-kit",
            str(doc_file),
        )
    try:
        changed = (
            changed_fields({k: v for k, v in doc.items() if k != DIGESTS}, doc[DIGESTS])
            if version >= 2 or DIGESTS in doc
            else []
        )
        if changed:
            raise DataError(
                f"{', '.join(changed)} changed after the corpus was written (SHA-256 differs "
                f"from {DIGESTS}); corpus.json is not for editing: run preprocess again",
                str(doc_file),
            )
        files = doc["files"]
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
        header = fh.read(_HEADER)
    if header[: len(IDX_MAGIC)] != IDX_MAGIC:
        raise DataError(f"not a {FORMAT} index (no {IDX_MAGIC!r} header)", str(idx))
    stored = int.from_bytes(header[len(IDX_MAGIC) :], "little")
    expected = _HEADER + 8 * (count + 1) + 4 * count
    if stored != count or idx.stat().st_size != expected:
        raise DataError(
            f"holds {stored} rows in {idx.stat().st_size} bytes; {CORPUS_FILE} says {count} "
            f"rows ({expected} bytes)",
            str(idx),
        )
    with idx.open("rb") as fh:
        fh.seek(_HEADER + 8 * count)
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
    positions = getattr(cfg.model, "max_positions", None)
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


# --------------------------------------------------------------------------------------
# Write side
# --------------------------------------------------------------------------------------


@dataclass
class _Source:
    """Rows of one data source, readable any number of times, each time streaming."""

    name: str
    path: str | None
    valid_fraction: float
    rows: Callable[[], Iterator[Pair]]


def _source(
    source: str, limit: int | None, options: dict[str, Any], max_line_bytes: int
) -> _Source:
    """A registered dataset (built in memory by its loader: they are small) or a TSV file,
    read row by row by the rules of :func:`seq2seq_kit.data.read_tsv_rows`."""
    from .data import _check_limit, load_dataset
    from .plugins import registry

    _check_limit(limit)
    if source in registry().datasets or not looks_like_path(source):
        # names an unknown dataset
        dataset = load_dataset(source, limit, max_line_bytes=max_line_bytes, **options)
        return _Source(dataset.name, None, dataset.valid_fraction, lambda: iter(dataset.pairs))
    if os.path.isdir(source):
        raise DataError("a folder, not a TSV file (and no preprocessed corpus)", source)

    def rows() -> Iterator[Pair]:
        return ((src, tgt) for _, src, tgt in iter_tsv_rows(source, limit, max_line_bytes))

    return _Source(os.path.basename(source), str(Path(source).resolve()), 0.1, rows)


@dataclass
class _Side:
    """Ids of one (split, side) as they are encoded: appended to a temporary int32 file
    in provisional numbering (see :class:`_Numbering`), lengths kept in memory."""

    file: Path
    lengths: array = field(default_factory=lambda: array("i"))

    def add(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        with self.file.open("ab") as fh:
            ids.astype(np.int32, copy=False).tofile(fh)
        self.lengths.frombytes(lengths.astype(np.int32).tobytes())


class _Numbering:
    """Provisional ids of pieces in first-seen order, for one vocabulary; renumbered into
    the vocabulary's ids once every piece has been counted."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer, self.index = tokenizer, {}  # type: dict[str, int]
        self._codes: np.ndarray | None = None  # code point -> id, for characters

    def encode(self, text: str) -> list[int]:
        pieces = self.tokenizer.encode(normalize(text))
        get = self.index.get
        ids = [get(piece, -1) for piece in pieces]
        if -1 in ids:
            index = self.index
            ids = [index.setdefault(piece, len(index)) for piece in pieces]
        return ids

    def encode_block(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """int32 ids of all ``texts`` back to back, and int64 [len(texts)] their lengths."""
        if type(self.tokenizer) is CharTokenizer:
            # One NFC pass over the block: "\n" never composes or reorders with its
            # neighbours, so normalising the joined texts normalises each; a text that
            # itself holds "\n" (no file row can) takes the per-text path.
            parts = normalize("\n".join(texts)).split("\n")
            if len(parts) == len(texts):
                try:
                    codes = np.frombuffer("".join(parts).encode("utf-32-le"), dtype="<u4")
                except UnicodeEncodeError:  # a lone surrogate: the per-text path keeps it
                    pass
                else:
                    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
                    return self._characters(codes), lengths
        rows = [self.encode(text) for text in texts]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths

    def _characters(self, codes: np.ndarray) -> np.ndarray:
        if self._codes is None:
            self._codes = np.full(0x110000, -1, dtype=np.int32)
        ids = self._codes[codes]
        unseen = ids < 0
        if unseen.any():
            for code in np.unique(codes[unseen]).tolist():
                self._codes[code] = self.index.setdefault(chr(code), len(self.index))
            ids = self._codes[codes]
        return ids


def preprocess(cfg: Config, out: str | os.PathLike[str], *, overwrite: bool | None = None) -> Path:
    """Write the corpus of ``cfg.data`` (split by ``cfg.train.seed`` as training splits) to
    directory ``out``; see the module documentation for the files.

    Rows are streamed from a TSV file; memory grows with the rows' lengths (4 bytes a
    row per side, until written) and the pieces, not with the text. Two things need more:
    ``valid_fraction`` holds out distinct sources, so their set is collected first (a
    ``[data] valid`` file needs none), and a learned tokenizer (``sentencepiece``) trains
    on at most :data:`SAMPLE_PAIRS` training pairs. Training pairs over
    ``data.max_source_length`` / ``max_target_length`` are skipped before the vocabulary
    counts pieces, as training from text skips them (``model.max_positions`` is applied
    when training).

    Args:
        overwrite: replace a corpus already at ``out``; default ``cfg.train.overwrite``.

    Returns:
        ``out``.

    Raises:
        ConfigError: ``out`` is a file, a non-empty folder other than a corpus, or a corpus
            without ``overwrite``; a bad tokenizer name or option (naming its key); a
            vocabulary with no piece but the specials, or one that maps most of the training
            pieces to ``<unk>`` (:func:`~seq2seq_kit.prepare.check_vocabulary`: naming the side,
            the tokenizer and the option).
        DataError: unreadable or malformed data (naming file and line), a source that is
            itself a corpus, or no training pairs after the split and length caps.
    """
    out = Path(out).resolve()
    overwrite = cfg.train.overwrite if overwrite is None else overwrite
    _check_out(out, overwrite)
    data = cfg.data
    if is_corpus(data.source):
        raise DataError("already a preprocessed corpus: train from it directly", data.source)
    source = _source(data.source, data.limit, data.options, data.max_line_bytes)
    valid_source = (
        None if data.valid is None else _source(data.valid, None, {}, data.max_line_bytes)
    )
    fraction = None
    held: set[str] = set()
    if valid_source is None:
        fraction = source.valid_fraction if data.valid_fraction is None else data.valid_fraction
        if fraction > 0:
            held = held_out_sources({s for s, _ in source.rows()}, fraction, cfg.train.seed)

    def train_rows() -> Iterator[Pair]:
        return (pair for pair in source.rows() if pair[0] not in held)

    def valid_rows() -> Iterator[Pair]:
        if valid_source is not None:
            return valid_source.rows()
        return (pair for pair in source.rows() if pair[0] in held)

    tokenizers = _trained_tokenizers(cfg, train_rows)
    try:
        with atomic.writer_lock(out):
            _check_out(out, overwrite)  # again, now that no one else can write it
            obsolete = _own_files(out)
            with atomic.stage(out) as staging:
                doc = _write(cfg, staging, tokenizers, train_rows, valid_rows)
                doc["name"] = source.name
                doc["data"] = {
                    **data.model_dump(mode="json"),
                    "source": source.path or data.source,
                    "valid": None if valid_source is None else (valid_source.path or data.valid),
                }
                doc["split_seed"] = cfg.train.seed if held else None
                doc["valid_fraction_used"] = fraction
                doc[DIGESTS] = field_digests(json.loads(json.dumps(doc, ensure_ascii=False)))
                (staging / CORPUS_FILE).write_text(
                    json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
                )
                try:
                    atomic.commit(out, staging, CORPUS_FILE, obsolete)
                except ValueError as exc:  # a folder where a file of the corpus goes
                    raise ConfigError(str(exc)) from None
    except atomic.Unwritable as exc:
        raise ConfigError(f"{option('out', out)}: cannot write there ({exc})") from None
    except atomic.Busy as exc:
        raise ConfigError(
            f"{option('out', out)}: another seq2seq-kit command is writing this folder (it "
            f"holds {exc}); wait for it to end or choose another folder"
        ) from None
    return out


def _own_files(out: Path) -> set[str]:
    """The files of the corpus now in ``out``, which a save may replace or remove:
    ``corpus.json`` and, when its digests vouch for them, the files it lists that have the
    names a corpus's files have (``SPLIT.SIDE.bin`` / ``.idx``, ``source-*``, ``target-*``)."""
    names = {CORPUS_FILE}
    ids = {
        f"{split}.{side}.{kind}" for split in SPLITS for side in SIDES for kind in ("bin", "idx")
    }
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, KeyError):
        doc = read_json(out / CORPUS_FILE)
        body = {k: v for k, v in doc.items() if k != DIGESTS}
        if doc.get("format") != FORMAT or changed_fields(body, doc[DIGESTS]):
            return names
        names.update(n for n in doc["files"] if n in ids or n.startswith(("source-", "target-")))
    return {name for name in names if atomic.plain_name(name)}


def _is_corpus_dir(out: Path) -> bool:
    try:
        doc = read_json(out / CORPUS_FILE)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option('out', out)}: exists and is a file; choose a folder")
    if out.is_dir() and atomic.user_entries(out):
        if not _is_corpus_dir(out):
            raise ConfigError(
                f"{option('out', out)}: a non-empty folder that is no corpus (no {CORPUS_FILE} "
                f"of this format); not writing into it"
            )
        if not overwrite:
            raise ConfigError(
                f"{option('out', out)}: already holds a corpus; replace it with "
                f"{option('overwrite')} (config train.overwrite = true) or choose another folder"
            )


def _trained_tokenizers(
    cfg: Config, train_rows: Callable[[], Iterator[Pair]]
) -> tuple[Tokenizer, Tokenizer]:
    """Each side's tokenizer as training from text makes it; one that learns is trained on
    the training pairs, or a uniform sample of :data:`SAMPLE_PAIRS` of them."""
    names = {cfg.data.side(side)[0] for side in SIDES}
    sample: list[Pair] = []
    if not names <= set(_UNTRAINED):
        rng = random.Random(cfg.train.seed)
        for seen, pair in enumerate(train_rows()):
            if seen < SAMPLE_PAIRS:
                sample.append(pair)
            else:  # Vitter's algorithm R: each pair is kept with probability k / (seen + 1)
                slot = rng.randrange(seen + 1)
                if slot < SAMPLE_PAIRS:
                    sample[slot] = pair
        if not sample:
            raise DataError("no training pairs: the validation split holds out all of them")
    return prepare.train_tokenizers(cfg, sample, None)


def _write(
    cfg: Config,
    staging: Path,
    tokenizers: tuple[Tokenizer, Tokenizer],
    train_rows: Callable[[], Iterator[Pair]],
    valid_rows: Callable[[], Iterator[Pair]],
) -> dict[str, Any]:
    """Encode both splits into ``staging`` and return the corpus.json entries made so far."""
    shared = cfg.data.shared_vocabulary
    source_numbers = _Numbering(tokenizers[0])
    numbers = (source_numbers, source_numbers if shared else _Numbering(tokenizers[1]))
    caps = (cfg.data.max_source_length, cfg.data.max_target_length)
    sides = {
        (split, side): _Side(staging / f".{split}.{side}.tmp") for split in SPLITS for side in SIDES
    }
    for side in sides.values():
        side.file.touch()
    skipped = 0
    for split, rows in (("train", train_rows), ("valid", valid_rows)):
        pairs = rows()
        while block := list(islice(pairs, _BLOCK)):
            src, src_lengths = numbers[0].encode_block([source for source, _ in block])
            tgt, tgt_lengths = numbers[1].encode_block([target for _, target in block])
            if split == "train" and caps != (None, None):
                keep = np.ones(len(block), dtype=bool)
                if caps[0] is not None:
                    keep &= src_lengths <= caps[0]
                if caps[1] is not None:
                    keep &= tgt_lengths <= caps[1]
                if not keep.all():
                    skipped += int(len(keep) - keep.sum())
                    src, src_lengths = src[np.repeat(keep, src_lengths)], src_lengths[keep]
                    tgt, tgt_lengths = tgt[np.repeat(keep, tgt_lengths)], tgt_lengths[keep]
            sides[split, "source"].add(src, src_lengths)
            sides[split, "target"].add(tgt, tgt_lengths)
    if skipped:
        named = " / ".join(
            f"data.{key} = {cap}"
            for key, cap in zip(("max_source_length", "max_target_length"), caps, strict=True)
            if cap is not None
        )
        log.info("skipped %d training pairs longer than %s tokens", skipped, named)
    if not len(sides["train", "source"].lengths):
        raise DataError(
            "no training pairs: the validation split or the length caps leave none",
            cfg.data.source,
        )
    vocabs = _vocabularies_from_counts(cfg, numbers, sides, tokenizers)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seq2seq_kit_version": __version__,
        "shared_vocabulary": shared,
        "counts": {split: len(sides[split, "source"].lengths) for split in SPLITS},
        "skipped_too_long": skipped,
        "dtypes": {},
        "source_vocab": vocabs[0].to_dict(),
        "target_vocab": vocabs[1].to_dict(),
    }
    for side_index, side in enumerate(SIDES):
        vocab, numbering = vocabs[side_index], numbers[side_index]
        dtype = np.uint16 if len(vocab) <= 1 << 16 else np.int32
        doc["dtypes"][side] = np.dtype(dtype).name
        table = np.full(max(len(numbering.index), 1), UNK, dtype=np.int32)
        for piece, provisional in numbering.index.items():
            table[provisional] = vocab._index.get(piece, UNK)
        for split in SPLITS:
            _finish(sides[split, side], staging / f"{split}.{side}", table, dtype)
    files: dict[str, str] = {}
    for side_index, side in enumerate(SIDES):
        if shared and side_index:
            break
        tokenizers[side_index].save(staging, f"{side}-")  # hashed below with the id files
    for child in sorted(staging.iterdir()):
        if child.is_file() and not child.name.startswith("."):
            files[child.name] = file_sha256(child)
    doc["files"] = files
    return doc


def _vocabularies_from_counts(
    cfg: Config,
    numbers: tuple[_Numbering, _Numbering],
    sides: dict[tuple[str, str], _Side],
    tokenizers: tuple[Tokenizer, Tokenizer],
) -> tuple[Vocabulary, Vocabulary]:
    """Each vocabulary from its pieces' counts over the training rows kept (as
    :meth:`Vocabulary.build` over those rows' texts), checked as training from text checks
    it (:func:`~seq2seq_kit.prepare.check_vocabulary`)."""
    shared = cfg.data.shared_vocabulary
    counted = []
    for side_index, side in enumerate(SIDES):
        numbering = numbers[side_index]
        files = [sides["train", s].file for s in (SIDES if shared else (side,))]
        counts = np.zeros(len(numbering.index), dtype=np.int64)
        for file in files:
            for chunk in _chunks(file):
                counts += np.bincount(chunk, minlength=len(counts))
        pieces = {piece: int(counts[i]) for piece, i in numbering.index.items()}
        counted.append(Vocabulary.from_counts(pieces, tokenizers[side_index]))
        prepare.check_vocabulary(cfg, "shared" if shared else side, counted[-1], pieces)
        if shared:
            return counted[0], counted[0]
    return counted[0], counted[1]


def _chunks(file: Path) -> Iterator[np.ndarray]:
    with file.open("rb") as fh:
        while True:
            chunk = np.fromfile(fh, dtype=np.int32, count=_CHUNK)
            if not chunk.size:
                return
            yield chunk


def _finish(side: _Side, stem: Path, table: np.ndarray, dtype: Any) -> None:
    """Renumber a temporary id file into ``STEM.bin`` and write ``STEM.idx``."""
    with Path(f"{stem}.bin").open("wb") as fh:
        for chunk in _chunks(side.file):
            table[chunk].astype(dtype).tofile(fh)
    side.file.unlink()
    lengths = np.frombuffer(side.lengths, dtype=np.int32) if side.lengths else np.zeros(0, np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    with Path(f"{stem}.idx").open("wb") as fh:
        fh.write(IDX_MAGIC + len(lengths).to_bytes(8, "little"))
        offsets.astype("<i8").tofile(fh)
        lengths.astype("<i4").tofile(fh)
