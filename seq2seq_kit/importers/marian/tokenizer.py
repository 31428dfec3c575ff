"""The ``marian`` tokenizer: a Marian model's own SentencePiece model on each side, a
leading language code kept as one piece, sources ended with :data:`SOURCE_END`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: The piece that ends every source, standing for Marian's ``</s>`` there
#: (:class:`MarianSentencePiece`): the last id of the vocabulary.
SOURCE_END = "<source-end>"


class MarianSentencePiece:
    """A trained SentencePiece model used as it came (``source.spm`` or ``target.spm``): its
    own normalisation rules, no training. As ``MarianTokenizer._tokenize``: a text starting
    with a language code ``>>xx<<`` gives that code as its first piece, the rest is
    SentencePiece's pieces of the remainder. On the source side (``source_end``) the pieces
    end with :data:`SOURCE_END`, as Marian's sources end with ``</s>``
    (``MarianTokenizer.build_inputs_with_special_tokens``); our sources carry no EOS, so the
    mark is a piece of its own, Marian's EOS row under another id. Decoding drops it and
    joins the other pieces with SentencePiece.

    Registered as tokenizer ``marian`` (options: ``{"source_end": true}`` on the source
    side, ``{}`` on the target side); saved as ``{prefix}sentencepiece.model`` in the model
    directory, under its SHA-256 like every tokenizer file."""

    name = "marian"
    FILE = "sentencepiece.model"

    def __init__(self, proto: bytes, source_end: bool = False) -> None:
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except RuntimeError as exc:
            raise ValueError(f"not a SentencePiece model ({exc})") from None
        self._processor, self._proto, self.source_end = processor, proto, source_end

    def encode(self, text: str) -> list[str]:
        code: list[str] = []
        end = text.find("<<") if text.startswith(">>") else -1
        if end != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        pieces = code + list(self._processor.EncodeAsPieces(text))
        return pieces + [SOURCE_END] if self.source_end else pieces

    def decode(self, pieces: Sequence[str]) -> str:
        return self._processor.DecodePieces([p for p in pieces if p != SOURCE_END])

    def train(self, texts: Iterable[str]) -> None:
        return None  # trained with the model: its pieces are the model's vocabulary

    def save(self, directory: Path, prefix: str) -> list[str]:
        name = f"{prefix}{self.FILE}"
        (directory / name).write_bytes(self._proto)
        return [name]

    def options(self) -> dict[str, Any]:
        return {"source_end": True} if self.source_end else {}

    def splitting_options(self) -> dict[str, Any]:
        """``source_end``, which adds a piece to every text."""
        return {"source_end": self.source_end}


def make_tokenizer(
    options: dict[str, Any], directory: Path | None, prefix: str
) -> MarianSentencePiece:
    """Tokenizer ``marian`` of a model directory: its ``{prefix}sentencepiece.model``."""
    if set(options) - {"source_end"} or options.get("source_end", False) not in (True, False):
        raise ValueError(
            f"tokenizer 'marian' options: only source_end (true or false), got {options!r}"
        )
    if directory is None:
        raise ValueError(
            "tokenizer 'marian' comes with an imported model (seq2seq-kit import --format "
            "marian); it is not trained here"
        )
    proto = (directory / f"{prefix}{MarianSentencePiece.FILE}").read_bytes()
    return MarianSentencePiece(proto, bool(options.get("source_end", False)))
