"""Tokenizers: text <-> pieces, one per side of a task, registered like backends.

A tokenizer splits NFC-normalised text into pieces (characters, words, subwords) and joins
pieces back into text; the :class:`~seq2seq_kit.vocab.Vocabulary` numbers the pieces. Built
in: ``char``, ``word`` and ``sentencepiece``; a plugin adds one through the
``register_tokenizers`` hook exactly as a backend is added.

The contract (a :class:`Tokenizer`):

- ``encode(text) -> list[str]`` and ``decode(pieces) -> str``, with
  ``decode(encode(text)) == text`` for NFC text that the tokenizer keeps whole (``word``
  joins words with one space: it keeps text whose words are separated by single spaces;
  ``sentencepiece`` keeps all text but U+2581, its own mark for a space).
- ``train(texts)``: learn from the training texts only (never validation or test text); a
  tokenizer with nothing to learn does nothing.
- ``save(directory, prefix) -> list[str]``: write the files a trained tokenizer needs into
  the model directory, named with ``prefix``; the checkpoint records their SHA-256 and checks
  them before :func:`make_tokenizer` reads them again. Loading parses data; it never executes
  code.
- ``options() -> dict``: the JSON-able options to rebuild it, saved in ``model.json``.
- Optional ``min_frequency`` / ``max_size`` attributes limit the vocabulary built over its
  pieces (rarer pieces become ``<unk>``).
- Optional ``splitting_options() -> dict``: those of its options, defaults filled in, that
  change how a trained tokenizer (its saved files given) splits text into pieces and joins
  them, leaving out those that only shaped its vocabulary or its training. Two tokenizers of
  one kind with the same splitting options and the same files split every text alike; an
  ensemble (:mod:`seq2seq_kit.ensemble`) holds its members to that and to equal
  vocabularies. Without it, every option counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .hookspecs import hookimpl


@runtime_checkable
class Tokenizer(Protocol):
    """What the vocabulary needs of a tokenizer; see the module documentation."""

    name: str

    def encode(self, text: str) -> list[str]: ...

    def decode(self, pieces: Sequence[str]) -> str: ...

    def train(self, texts: Iterable[str]) -> None: ...

    def save(self, directory: Path, prefix: str) -> list[str]: ...

    def options(self) -> dict[str, Any]: ...


#: ``make(options, directory, prefix)``: see :func:`make_tokenizer`.
MakeFn = Callable[[dict[str, Any], "Path | None", str], Tokenizer]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


#: The most ids a vocabulary may have: ids are int32 in batches and corpus files.
MAX_VOCABULARY = 2**31 - 1


class _Stateless:
    """A tokenizer with nothing to learn or to save."""

    name = ""

    def train(self, texts: Iterable[str]) -> None:
        return None

    def save(self, directory: Path, prefix: str) -> list[str]:
        return []

    def options(self) -> dict[str, Any]:
        return {}

    def splitting_options(self) -> dict[str, Any]:
        return {}


class CharTokenizer(_Stateless):
    """Every character is a piece (the seed notebook's one-hot characters)."""

    name = "char"

    def encode(self, text: str) -> list[str]:
        return list(text)

    def decode(self, pieces: Sequence[str]) -> str:
        return "".join(pieces)


class WordOptions(_Options):
    min_frequency: int = Field(1, ge=1, le=2**31 - 1, description="rarer words become <unk>")
    max_size: int | None = Field(
        None, ge=1, le=MAX_VOCABULARY, description="keep the most frequent N words"
    )


class WordTokenizer(_Stateless):
    """Whitespace-separated words (OpenNMT's ``words_min_frequency`` and ``src_vocab_size``
    are ``min_frequency`` and ``max_size``); decoding joins them with one space."""

    name = "word"

    def __init__(self, options: WordOptions) -> None:
        self.min_frequency, self.max_size = options.min_frequency, options.max_size
        self._options = options

    def encode(self, text: str) -> list[str]:
        return text.split()

    def decode(self, pieces: Sequence[str]) -> str:
        return " ".join(pieces)

    def options(self) -> dict[str, Any]:
        return self._options.model_dump(exclude_defaults=True)

    def splitting_options(self) -> dict[str, Any]:
        """None: ``min_frequency`` and ``max_size`` shape the vocabulary only (a word it
        lacks is ``<unk>``, which the vocabulary decides)."""
        return {}


class SentencePieceOptions(_Options):
    model_type: Literal["unigram", "bpe"] = Field(
        "unigram", description="Kudo 2018 unigram language model, or BPE (Sennrich et al. 2016)"
    )
    # 2**20: four times the largest vocabularies in use (256k pieces), so a typo is refused
    # before SentencePiece or the model's embeddings allocate for it
    vocab_size: int = Field(8000, ge=8, le=1 << 20, description="pieces in the learned model")
    character_coverage: float = Field(
        1.0, gt=0.0, le=1.0, description="share of characters covered (SentencePiece's option)"
    )
    # SentencePiece holds it in a 32-bit int
    seed_sentencepiece_size: int = Field(
        1_000_000,
        ge=1,
        le=2**31 - 1,
        description="SentencePiece's seed pieces for unigram training",
    )


class SentencePieceTokenizer:
    """Subword pieces from a SentencePiece model (Kudo & Richardson 2018) trained on the
    training texts: unigram or BPE. No normalisation inside SentencePiece (the vocabulary
    already applies NFC) and whitespace kept as it is, so decoding restores the text."""

    name = "sentencepiece"
    FILE = "sentencepiece.model"

    def __init__(self, options: SentencePieceOptions, model_file: Path | None = None) -> None:
        self._options = options
        self._processor: Any = None
        if model_file is not None:
            self._load(model_file.read_bytes())

    def _load(self, proto: bytes) -> None:
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except RuntimeError as exc:
            raise ValueError(f"not a SentencePiece model ({exc})") from None
        self._processor, self._proto = processor, proto

    def _ready(self) -> Any:
        if self._processor is None:
            raise RuntimeError("this SentencePiece tokenizer is not trained yet")
        return self._processor

    def encode(self, text: str) -> list[str]:
        return list(self._ready().EncodeAsPieces(text))

    def decode(self, pieces: Sequence[str]) -> str:
        return self._ready().DecodePieces(list(pieces))

    def train(self, texts: Iterable[str]) -> None:
        """Learn the model from ``texts`` in memory (the training pairs' side).

        Raises:
            ValueError: SentencePiece cannot build ``vocab_size`` pieces from these texts
                (its message says the largest size it can).
        """
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        options = self._options
        try:
            spm.SentencePieceTrainer.Train(
                sentence_iterator=iter(list(texts)),
                model_writer=model,
                model_type=options.model_type,
                vocab_size=options.vocab_size,
                character_coverage=options.character_coverage,
                seed_sentencepiece_size=options.seed_sentencepiece_size,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                split_digits=False,
                # our vocabulary owns the specials: SentencePiece's own stay unused
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                unk_id=0,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            largest = re.search(r"<= (\d+)", str(exc))
            if largest and "Vocabulary size" in str(exc):
                raise ValueError(
                    f"vocab_size {options.vocab_size} is more pieces than these training texts "
                    f"allow; at most {largest.group(1)}"
                ) from None
            raise ValueError(f"sentencepiece: {exc}") from None
        self._load(model.getvalue())

    def save(self, directory: Path, prefix: str) -> list[str]:
        self._ready()
        name = f"{prefix}{self.FILE}"
        (directory / name).write_bytes(self._proto)
        return [name]

    def options(self) -> dict[str, Any]:
        return self._options.model_dump()

    def splitting_options(self) -> dict[str, Any]:
        """None: every option shaped the training; the trained model (the saved file)
        alone decides the pieces."""
        return {}


def _options(model: type[_Options], name: str, options: dict[str, Any]) -> Any:
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"tokenizer {name!r} options: {problems}") from None


def _char(options: dict[str, Any], directory: Path | None, prefix: str) -> Tokenizer:
    _options(_Options, "char", options)
    return CharTokenizer()


def _word(options: dict[str, Any], directory: Path | None, prefix: str) -> Tokenizer:
    return WordTokenizer(_options(WordOptions, "word", options))


def _sentencepiece(options: dict[str, Any], directory: Path | None, prefix: str) -> Tokenizer:
    parsed = _options(SentencePieceOptions, "sentencepiece", options)
    model_file = None if directory is None else directory / f"{prefix}{SentencePieceTokenizer.FILE}"
    return SentencePieceTokenizer(parsed, model_file)


@hookimpl
def register_tokenizers(register: Callable[..., None]) -> None:
    register("char", _char)
    register("word", _word)
    register("sentencepiece", _sentencepiece)


def make_tokenizer(
    name: str,
    options: dict[str, Any] | None = None,
    directory: str | os.PathLike[str] | None = None,
    prefix: str = "",
) -> Tokenizer:
    """The registered tokenizer ``name`` built with ``options``; from the files it saved
    with ``prefix`` in ``directory`` when given.

    Raises:
        ValueError: an unknown name (listing the registered ones) or a bad option.
    """
    from .plugins import registry

    makers = registry().tokenizers
    if name not in makers:
        raise ValueError(f"unknown tokenizer {name!r}; registered: {', '.join(sorted(makers))}")
    folder = None if directory is None else Path(directory)
    return makers[name](dict(options or {}), folder, prefix)
