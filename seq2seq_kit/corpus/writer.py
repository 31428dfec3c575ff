"""Writing a corpus: :func:`preprocess` streams the data through the tokenizers into
temporary id files, counts the vocabularies, then renumbers the ids into the corpus's
files."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic, prepare
from ..config import Config
from ..data import Pair, held_out_sources, iter_tsv_rows, looks_like_path
from ..errors import ConfigError, DataError, option
from ..integrity import changed_fields, file_sha256, manifest_of, seal
from ..tokenizers import CharTokenizer, Tokenizer
from ..version import __version__
from ..vocab import UNK, Vocabulary, normalize
from .format import CORPUS_FILE, FORMAT, FORMAT_VERSION, IDX_MAGIC, SIDES, SPLITS
from .reader import is_corpus

log = logging.getLogger(__name__)

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
    from ..data import _check_limit, load_dataset
    from ..plugins import registry

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
    directory ``out``; see :mod:`seq2seq_kit.corpus` for the files.

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
                (staging / CORPUS_FILE).write_text(
                    json.dumps(seal(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
                )
                atomic.commit(out, staging, CORPUS_FILE, obsolete)
    except atomic.Refused as exc:
        raise ConfigError(f"{option('out', out)}: {exc}") from None
    return out


def _own_files(out: Path) -> set[str]:
    """The files of the corpus now in ``out``, which a save may replace or remove:
    ``corpus.json`` and, when its digests vouch for them, the files it lists that have the
    names a corpus's files have (``SPLIT.SIDE.bin`` / ``.idx``, ``source-*``, ``target-*``)."""
    names = {CORPUS_FILE}
    ids = {
        f"{split}.{side}.{kind}" for split in SPLITS for side in SIDES for kind in ("bin", "idx")
    }
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        doc = manifest_of(out / CORPUS_FILE, FORMAT)
        if doc is None or changed_fields(doc):
            return names
        names.update(n for n in doc["files"] if n in ids or n.startswith(("source-", "target-")))
    return {name for name in names if atomic.plain_name(name)}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option('out', out)}: exists and is a file; choose a folder")
    if out.is_dir() and atomic.user_entries(out):
        if manifest_of(out / CORPUS_FILE, FORMAT) is None:
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
    sides, skipped = _encode_splits(cfg, staging, numbers, train_rows, valid_rows)
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
    doc["dtypes"] = {  # the key keeps its place in corpus.json
        side: _renumber(staging, sides, side, vocabs[i], numbers[i]) for i, side in enumerate(SIDES)
    }
    doc["files"] = _saved_files(staging, tokenizers, shared)
    return doc


def _encode_splits(
    cfg: Config,
    staging: Path,
    numbers: tuple[_Numbering, _Numbering],
    train_rows: Callable[[], Iterator[Pair]],
    valid_rows: Callable[[], Iterator[Pair]],
) -> tuple[dict[tuple[str, str], _Side], int]:
    """Each split's pairs in provisional ids, in temporary files of ``staging`` (one per
    split and side), :data:`_BLOCK` rows at a time; training pairs over the length caps
    are left out. Returns the sides and how many pairs were left out."""
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
            src = numbers[0].encode_block([source for source, _ in block])
            tgt = numbers[1].encode_block([target for _, target in block])
            if split == "train" and caps != (None, None):
                src, tgt, dropped = _within_caps(src, tgt, caps)
                skipped += dropped
            sides[split, "source"].add(*src)
            sides[split, "target"].add(*tgt)
    if skipped:
        named = " / ".join(
            f"data.{key} = {cap}"
            for key, cap in zip(("max_source_length", "max_target_length"), caps, strict=True)
            if cap is not None
        )
        log.info("skipped %d training pairs longer than %s tokens", skipped, named)
    return sides, skipped


_Block = tuple[np.ndarray, np.ndarray]  # ids back to back, and each row's length


def _within_caps(
    src: _Block, tgt: _Block, caps: tuple[int | None, int | None]
) -> tuple[_Block, _Block, int]:
    """The rows of a block whose source and target are within their length ``caps``
    (None: no cap), and how many were dropped."""
    (src_ids, src_lengths), (tgt_ids, tgt_lengths) = src, tgt
    keep = np.ones(len(src_lengths), dtype=bool)
    if caps[0] is not None:
        keep &= src_lengths <= caps[0]
    if caps[1] is not None:
        keep &= tgt_lengths <= caps[1]
    if keep.all():
        return src, tgt, 0
    src = src_ids[np.repeat(keep, src_lengths)], src_lengths[keep]
    tgt = tgt_ids[np.repeat(keep, tgt_lengths)], tgt_lengths[keep]
    return src, tgt, int(len(keep) - keep.sum())


def _renumber(
    staging: Path,
    sides: dict[tuple[str, str], _Side],
    side: str,
    vocab: Vocabulary,
    numbering: _Numbering,
) -> str:
    """Renumber both splits of ``side`` into ``vocab``'s ids (UNK for a piece it left
    out), in the smallest dtype that holds them; returns the dtype's name."""
    dtype = np.uint16 if len(vocab) <= 1 << 16 else np.int32
    table = np.full(max(len(numbering.index), 1), UNK, dtype=np.int32)
    for piece, provisional in numbering.index.items():
        table[provisional] = vocab._index.get(piece, UNK)
    for split in SPLITS:
        _finish(sides[split, side], staging / f"{split}.{side}", table, dtype)
    return np.dtype(dtype).name


def _saved_files(
    staging: Path, tokenizers: tuple[Tokenizer, Tokenizer], shared: bool
) -> dict[str, str]:
    """Save the tokenizers' files (the source's alone when the vocabulary is shared) and
    return the digest of every file in ``staging``, the id files included."""
    for side_index, side in enumerate(SIDES):
        if shared and side_index:
            break
        tokenizers[side_index].save(staging, f"{side}-")
    return {
        child.name: file_sha256(child)
        for child in sorted(staging.iterdir())
        if child.is_file() and not child.name.startswith(".")
    }


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
