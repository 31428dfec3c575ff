"""Training data from text pairs (a dataset, a TSV file, pairs given in Python): loaded,
split into training and validation pairs, length-filtered, tokenized and encoded in memory,
as :func:`seq2seq_kit.corpus.training_data` reads them from a binarized corpus."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .architectures import max_source_tokens
from .checkpoint import Checkpoint
from .config import Config
from .corpus import TrainingData
from .data import Dataset, Pair, load_dataset, split, surrogate_at
from .errors import ConfigError, DataError
from .prepare import check_vocabulary, length_caps, over_caps, train_tokenizers
from .resume import data_fingerprint
from .run_record import RunRecord
from .tokenizers import Tokenizer
from .vocab import Vocabulary, count_pieces

log = logging.getLogger(__name__)


def text_training_data(
    cfg: Config, pairs: tuple[Pair, ...] | None, saved: Checkpoint | None
) -> TrainingData:
    """Training data from text pairs: ``pairs`` when given, else ``cfg.data.source`` (a
    dataset name or a TSV path); the vocabularies the saved run's when resuming ``saved``,
    else counted on the training pairs. File paths in ``cfg.data`` are made absolute (in
    place), so that a saved run resumes from any folder.

    Raises:
        DataError: no training pairs are left after the split and the length filter, or a
            resumed run trained on pairs given in Python is not given them again.
        ConfigError: a data path that is not valid UTF-8; a vocabulary with no piece but
            the specials, or one that maps most of the training pieces to ``<unk>``
            (:func:`seq2seq_kit.prepare.check_vocabulary`).
    """
    dataset, train_pairs, valid_pairs, skipped, tokenizers = _load_pairs(cfg, pairs, saved)
    fingerprint = data_fingerprint(train_pairs, valid_pairs)
    if saved is not None:
        source_vocab, target_vocab = saved.source_vocab, saved.target_vocab
    else:
        source_vocab, target_vocab = _vocabularies(cfg, train_pairs, tokenizers)

    def encode(pairs: Sequence[Pair]) -> tuple[list[list[int]], list[list[int]]]:
        # Validation may hold tokens training never saw: they become UNK, as at inference.
        return (
            [source_vocab.encode(s, unknown="replace") for s, _ in pairs],
            [target_vocab.encode(t, unknown="replace") for _, t in pairs],
        )

    return TrainingData(
        name=dataset.name,
        where=dataset.path or dataset.name,
        train=encode(train_pairs),
        valid=encode(valid_pairs),
        train_pairs=list(train_pairs),
        valid_pairs=list(valid_pairs),
        vocabs=(source_vocab, target_vocab),
        skipped=skipped,
        fingerprint=fingerprint,
    )


def _load_pairs(
    cfg: Config, pairs: tuple[Pair, ...] | None, saved: Checkpoint | None
) -> tuple[Dataset, list[Pair], list[Pair], int, tuple[Tokenizer, Tokenizer]]:
    """The dataset, its training and validation pairs after the split and the length
    filter, how many training pairs the filter skipped, and each side's tokenizer (trained
    on the training pairs before the filter, which counts its pieces). File paths in
    ``cfg.data`` are made absolute, so that a saved run resumes from any folder.

    Raises:
        DataError: no training pairs are left.
        ConfigError: a data path that is not valid UTF-8.
    """
    dataset = _dataset(cfg, pairs, saved)
    train_pairs, valid_pairs, split_away = _split(cfg, dataset)
    for key in ("source", "valid"):
        value = getattr(cfg.data, key)
        if value is not None and surrogate_at(value) is not None:
            raise ConfigError(f"data.{key}: {value!r} is not valid UTF-8 (model.json stores it)")
    if not train_pairs:
        raise DataError(
            f"no training pairs of {len(dataset.pairs)}: {split_away}; change that or add data",
            dataset.path or dataset.name,
        )
    tokenizers = train_tokenizers(cfg, train_pairs, saved)
    caps = length_caps(cfg)
    named = " / ".join(name for _, name in caps if name)
    too_long = over_caps(train_pairs, caps, tokenizers)
    skipped = sum(too_long)
    if skipped:
        log.info(
            "skipped %d of %d training pairs longer than %s tokens",
            skipped,
            len(train_pairs),
            named,
        )
        train_pairs = [p for p, drop in zip(train_pairs, too_long, strict=True) if not drop]
    if not train_pairs:
        raise DataError(
            f"no training pairs of {len(dataset.pairs)}: all {skipped} are longer than "
            f"{named}; change that or add data",
            dataset.path or dataset.name,
        )
    positions = max_source_tokens(cfg.model)
    if positions is not None:
        # Validation pairs keep any length the data keys allow (they are only scored), but
        # a Transformer has no position for a longer one: skipped too, and said so.
        positional = ((positions, ""), (positions - 1, ""))
        too_long = over_caps(valid_pairs, positional, tokenizers)
        if any(too_long):
            log.info(
                "skipped %d of %d validation pairs longer than model.max_positions = %d "
                "(the target with its BOS)",
                sum(too_long),
                len(valid_pairs),
                positions,
            )
            valid_pairs = [p for p, drop in zip(valid_pairs, too_long, strict=True) if not drop]
    return dataset, train_pairs, valid_pairs, skipped, tokenizers


def _vocabularies(
    cfg: Config, train_pairs: Sequence[Pair], tokenizers: tuple[Tokenizer, Tokenizer]
) -> tuple[Vocabulary, Vocabulary]:
    """Each side's vocabulary counted on the training pairs (one for both sides with
    ``data.shared_vocabulary``), once checked (:func:`check_vocabulary`)."""
    if cfg.data.shared_vocabulary:
        texts = [s for s, _ in train_pairs] + [t for _, t in train_pairs]
        counts = count_pieces(texts, tokenizers[0])
        shared = Vocabulary.from_counts(counts, tokenizers[0])
        check_vocabulary(cfg, "shared", shared, counts)
        return shared, shared
    vocabs = []
    for side, tokenizer, texts in zip(
        ("source", "target"), tokenizers, zip(*train_pairs, strict=True), strict=True
    ):
        counts = count_pieces(texts, tokenizer)
        vocabs.append(Vocabulary.from_counts(counts, tokenizer))
        check_vocabulary(cfg, side, vocabs[-1], counts)
    return vocabs[0], vocabs[1]


def _dataset(cfg: Config, pairs: tuple[Pair, ...] | None, saved: Checkpoint | None) -> Dataset:
    """The pairs given, or the dataset ``cfg.data.source`` names (its path made absolute
    in ``cfg``), the first ``cfg.data.limit`` of them.

    Raises:
        DataError: a resumed run trained on pairs given in Python is not given them again.
    """
    if pairs is not None:
        return Dataset(pairs[: cfg.data.limit] if cfg.data.limit else pairs, "pairs")
    if saved is not None and RunRecord.from_dict(saved.meta).data == "pairs":
        raise DataError("this run was trained on pairs given in Python: pass them again (data=)")
    dataset = load_dataset(
        cfg.data.source,
        cfg.data.limit,
        max_line_bytes=cfg.data.max_line_bytes,
        **cfg.data.options,
    )
    if dataset.path is not None:
        cfg.data.source = str(Path(dataset.path).resolve())
    return dataset


def _split(cfg: Config, dataset: Dataset) -> tuple[list[Pair], list[Pair], str]:
    """The training and validation pairs: ``dataset``'s and ``cfg.data.valid``'s (its path
    made absolute in ``cfg``), or ``dataset`` split by ``data.valid_fraction``; and what
    the split holds out, for the message when no training pair is left."""
    if cfg.data.valid is not None:
        valid_dataset = load_dataset(cfg.data.valid, max_line_bytes=cfg.data.max_line_bytes)
        if valid_dataset.path is not None:
            cfg.data.valid = str(Path(valid_dataset.path).resolve())
        return list(dataset.pairs), list(valid_dataset.pairs), ""
    fraction = cfg.data.valid_fraction
    fraction = dataset.valid_fraction if fraction is None else fraction
    train_pairs, valid_pairs = split(dataset.pairs, fraction, cfg.train.seed)
    if fraction > 0 and not valid_pairs:
        log.warning(
            "valid_fraction %s of %d distinct sources holds out none: training without "
            "validation (the last weights are kept)",
            fraction,
            len({source for source, _ in dataset.pairs}),
        )
    return (
        train_pairs,
        valid_pairs,
        f"the validation split (valid_fraction {fraction}) holds out all pairs",
    )
