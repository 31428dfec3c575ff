"""Tokenizers and the vocabulary: text <-> tokens <-> ids.

Specials live at fixed ids below every data token and are never characters or words of the
data: a tab, a newline or the string ``"<s>"`` in the data is an ordinary token. Data tokens
are numbered in code-point order, so ids do not depend on ``PYTHONHASHSEED`` or on the order
of the pairs. Text is NFC-normalised before tokenizing, at training and at inference alike.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UnknownTokenError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
TOKENIZERS = ("char", "word")


def normalize(text: str) -> str:
    """Unicode NFC (composed) form, so "é" typed either way is one token."""
    return unicodedata.normalize("NFC", text)


def tokenize(text: str, tokenizer: str) -> list[str]:
    """Split NFC-normalised ``text`` into characters (``"char"``) or whitespace-separated
    words (``"word"``). Raises ``ValueError`` for another tokenizer name."""
    text = normalize(text)
    if tokenizer == "char":
        return list(text)
    if tokenizer == "word":
        return text.split()
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")


def detokenize(tokens: Sequence[str], tokenizer: str) -> str:
    return ("" if tokenizer == "char" else " ").join(tokens)


@dataclass(frozen=True)
class Vocabulary:
    """Ids for one side (source or target) of a task.

    Ids 0..3 are PAD, BOS, EOS and UNK; data tokens follow from id 4 in code-point order.
    """

    tokens: tuple[str, ...]
    tokenizer: str = "char"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}; choose one of {TOKENIZERS}")
        index = {tok: i + len(SPECIALS) for i, tok in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be distinct")
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, texts: Iterable[str], tokenizer: str = "char") -> Vocabulary:
        """Collect every token of ``texts``; ids are deterministic (sorted by code point)."""
        seen: set[str] = set()
        for text in texts:
            seen.update(tokenize(text, tokenizer))
        return cls(tuple(sorted(seen)), tokenizer)

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def encode(self, text: str, *, unknown: str = "error", line: int | None = None) -> list[int]:
        """Ids of ``text`` without BOS/EOS.

        Args:
            unknown: ``"error"`` raises :class:`UnknownTokenError` naming the first token not
                in the vocabulary, its 1-based position and ``line``; ``"replace"`` maps it to
                UNK.
            line: the input line number to name in the error, if the text came from one.
        """
        ids = []
        for position, tok in enumerate(tokenize(text, self.tokenizer), start=1):
            idx = self._index.get(tok)
            if idx is None:
                if unknown != "replace":
                    raise UnknownTokenError(tok, position, text, line, self.tokenizer)
                idx = UNK
            ids.append(idx)
        return ids

    def token(self, idx: int) -> str:
        """The token of id ``idx``; specials by their names (``"</s>"``...)."""
        if not 0 <= idx < len(self):
            raise ValueError(f"id {idx} is outside this vocabulary of {len(self)} ids")
        return SPECIALS[idx] if idx < len(SPECIALS) else self.tokens[idx - len(SPECIALS)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, stopping at the first EOS; PAD, BOS and UNK are dropped, so no
        special ever appears in the text."""
        out = []
        offset = len(SPECIALS)
        for idx in ids:
            idx = int(idx)
            if idx == EOS:
                break
            if idx >= offset:
                out.append(self.tokens[idx - offset])
        return detokenize(out, self.tokenizer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "specials": list(SPECIALS),
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        if list(data.get("specials", SPECIALS)) != list(SPECIALS):
            raise ValueError(f"vocabulary specials {data.get('specials')} differ from {SPECIALS}")
        return cls(tuple(data["tokens"]), data.get("tokenizer", "char"))


def pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Right-pad id lists with PAD into an int32 array of shape [len(sequences), length]."""
    length = max((len(s) for s in sequences), default=0) if length is None else length
    out = np.full((len(sequences), length), PAD, dtype=np.int32)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out
