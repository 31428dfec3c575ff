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
from .errors import ConfigError, DataError, UnknownTokenError, describe_token, option
from .prepare import (
    MAX_UNKNOWN_SHARE,
    check_vocabulary,
    length_caps,
    over_caps,
    train_tokenizers,
)
from .resume import data_fingerprint
from .run_record import RunRecord
from .tokenizers import Tokenizer
from .vocab import Vocabulary, count_pieces

log = logging.getLogger(__name__)


def text_training_data(
    cfg: Config,
    pairs: tuple[Pair, ...] | None,
    saved: Checkpoint | None,
    kept: tuple[Vocabulary, Vocabulary] | None = None,
) -> TrainingData:
    """Training data from text pairs: ``pairs`` when given, else ``cfg.data.source`` (a
    dataset name or a TSV path); the vocabularies the saved run's when resuming ``saved``,
    those ``kept`` for a fine-tuned run (its model's: a training piece they lack is refused
    or mapped to ``<unk>`` as ``cfg.decode.unknown`` says), else counted on the training
    pairs. File paths in ``cfg.data`` are made absolute (in place), so that a saved run
    resumes from any folder.

    Raises:
        DataError: no training pairs are left after the split and the length filter, or a
            resumed run trained on pairs given in Python is not given them again; a
            training piece the ``kept`` vocabularies lack with ``decode.unknown = "error"``
            (naming the file and line, or the pair, and the piece).
        ConfigError: a data path that is not valid UTF-8; a vocabulary with no piece but
            the specials, or one that maps most of the training pieces to ``<unk>``
            (:func:`seq2seq_kit.prepare.check_vocabulary`; for ``kept`` ones,
            :func:`check_known`).
    """
    if kept is None and saved is not None:
        kept = saved.source_vocab, saved.target_vocab
    dataset, train_pairs, valid_pairs, skipped, tokenizers = _load_pairs(cfg, pairs, saved, kept)
    fingerprint = data_fingerprint(train_pairs, valid_pairs)
    if kept is not None:
        source_vocab, target_vocab = kept
        if saved is None:
            check_known(cfg, dataset, train_pairs, kept)
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
    cfg: Config,
    pairs: tuple[Pair, ...] | None,
    saved: Checkpoint | None,
    kept: tuple[Vocabulary, Vocabulary] | None,
) -> tuple[Dataset, list[Pair], list[Pair], int, tuple[Tokenizer, Tokenizer]]:
    """The dataset, its training and validation pairs after the split and the length
    filter, how many training pairs it skipped, each side's tokenizer (``kept``'s, or trained
    on the training pairs before the filter); ``cfg.data``'s file paths made absolute.

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
    tokenizers = train_tokenizers(cfg, train_pairs, kept)
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


def check_known(
    cfg: Config, dataset: Dataset, train_pairs: Sequence[Pair], kept: tuple[Vocabulary, Vocabulary]
) -> None:
    """Check the training pairs against a fine-tuned run's vocabularies ``kept`` (its
    model's), as ``cfg.decode.unknown`` says: ``"error"`` refuses the first piece they lack,
    ``"replace"`` lets it train as ``<unk>`` (counted in the log), as ``translate`` does
    with its input.

    Raises:
        DataError: with ``"error"``, naming the file and line (or the pair's number in the
            data), the side and the piece.
        ConfigError: with ``"replace"``, a side of which more than
            :data:`~seq2seq_kit.prepare.MAX_UNKNOWN_SHARE` of the pieces would be
            ``<unk>``.
    """
    where = dataset.path or dataset.name
    for side, vocab in zip(("source", "target"), kept, strict=True):
        texts = [pair[side == "target"] for pair in train_pairs]
        if cfg.decode.unknown == "error":
            for pair, text in zip(train_pairs, texts, strict=True):
                try:
                    vocab.encode(text)
                except UnknownTokenError as exc:
                    number = dataset.pairs.index(pair)
                    line = dataset.lines[number] if dataset.lines else None
                    at = "" if line is not None else f"pair {number + 1}: "
                    raise DataError(
                        f"{at}the {side}'s {describe_token(exc.token, exc.position, exc.kind)} "
                        f"in {text!r} is not in the vocabulary of the model train.init_from "
                        f"names; set {option('decode.unknown', 'replace')} to train it as <unk>",
                        where,
                        line,
                    ) from None
            continue
        counts = count_pieces(texts, vocab.tokenizer)
        unknown, total = vocab.count_unknown(counts), sum(counts.values())
        if unknown > MAX_UNKNOWN_SHARE * total:
            raise ConfigError(
                f"the model train.init_from names lacks {unknown} of the {total} pieces of the "
                f"training {side}s ({unknown / total:.1%}), more than the "
                f"{MAX_UNKNOWN_SHARE:.0%} a model can learn from: fine-tune on data in its "
                f"vocabulary, or train a new model"
            )
        if unknown:
            log.info("%d of the %d training %s pieces are <unk> to the model", unknown, total, side)
