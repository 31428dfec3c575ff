"""The vocabulary: pieces <-> ids, over a tokenizer (:mod:`seq2seq_kit.tokenizers`).

Specials live at fixed ids below every data piece and are never characters or words of the
data: a tab, a newline or the string ``"<s>"`` in the data is an ordinary piece. Ask a
vocabulary for them (``vocab.pad_id``, ``bos_id``, ``eos_id``, ``unk_id``); the module
constants are their values in every vocabulary this version builds. Data pieces are numbered
in code-point order, so ids do not depend on ``PYTHONHASHSEED`` or on the order of the pairs.
Text is NFC-normalised before tokenizing, at training and at inference alike.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import BOS, EOS, PAD, SPECIALS, UNK, pad
from .errors import UnknownTokenError
from .tokenizers import CharTokenizer, Tokenizer, WordOptions, WordTokenizer, make_tokenizer

# the special ids and pad() are the contract's (seq2seq_kit.batch), re-exported for users
__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "Vocabulary",
    "as_tokenizer",
    "count_pieces",
    "normalize",
    "pad",
]


def normalize(text: str) -> str:
    """Unicode NFC (composed) form, so "é" typed either way is one token."""
    return unicodedata.normalize("NFC", text)


def as_tokenizer(tokenizer: str | Tokenizer) -> Tokenizer:
    """A tokenizer object for a name (``"char"``, ``"word"``: built in, no registry needed;
    another registered name with default options) or the object itself.

    Raises:
        ValueError: an unknown name.
    """
    if not isinstance(tokenizer, str):
        return tokenizer
    if tokenizer == "char":
        return CharTokenizer()
    if tokenizer == "word":
        return WordTokenizer(WordOptions())
    return make_tokenizer(tokenizer)


@dataclass(frozen=True)
class Vocabulary:
    """Ids for one side (source or target) of a task.

    Ids 0..3 are PAD, BOS, EOS and UNK; data pieces follow from id 4 in code-point order.

    Attributes:
        tokens: the data pieces, in id order from id 4.
        tokenizer: what splits text into those pieces (a name is turned into the built-in
            tokenizer of that name).
    """

    tokens: tuple[str, ...]
    tokenizer: Tokenizer = field(default_factory=CharTokenizer, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    pad_id = PAD
    bos_id = BOS
    eos_id = EOS
    unk_id = UNK

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokenizer", as_tokenizer(self.tokenizer))
        index = {tok: i + len(SPECIALS) for i, tok in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be distinct")
        object.__setattr__(self, "_index", index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.tokens == other.tokens and self.tokenizer_name == other.tokenizer_name

    __hash__ = None  # type: ignore[assignment]

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name

    def pieces(self, text: str) -> list[str]:
        """The tokenizer's pieces of NFC-normalised ``text``."""
        return self.tokenizer.encode(normalize(text))

    @classmethod
    def build(cls, texts: Iterable[str], tokenizer: str | Tokenizer = "char") -> Vocabulary:
        """Collect the pieces of ``texts``; ids are deterministic (sorted by code point).
        A tokenizer's ``min_frequency`` and ``max_size`` (``word``) drop rarer pieces, which
        then encode as UNK; ``max_size`` keeps the most frequent, ties by code point."""
        tokenizer = as_tokenizer(tokenizer)
        return cls.from_counts(count_pieces(texts, tokenizer), tokenizer)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], tokenizer: str | Tokenizer) -> Vocabulary:
        """The vocabulary :meth:`build` makes from these piece counts (pieces of count 0
        are never kept), for callers that count pieces their own way (a streamed corpus)."""
        tokenizer = as_tokenizer(tokenizer)
        counts = {piece: n for piece, n in counts.items() if n > 0}
        min_frequency = getattr(tokenizer, "min_frequency", 1)
        kept = sorted(piece for piece, n in counts.items() if n >= min_frequency)
        max_size = getattr(tokenizer, "max_size", None)
        if max_size is not None and len(kept) > max_size:
            kept = sorted(sorted(kept, key=lambda piece: -counts[piece])[:max_size])
        return cls(tuple(kept), tokenizer)

    def count_unknown(self, counts: Mapping[str, int]) -> int:
        """How many of the pieces counted in ``counts`` (:func:`count_pieces`) this
        vocabulary maps to UNK."""
        return sum(n for piece, n in counts.items() if piece not in self._index)

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
        for position, tok in enumerate(self.pieces(text), start=1):
            idx = self._index.get(tok)
            if idx is None:
                if unknown != "replace":
                    raise UnknownTokenError(tok, position, text, line, self.tokenizer_name)
                idx = self.unk_id
            ids.append(idx)
        return ids

    def token_id(self, token: str) -> int:
        """The id of the data piece ``token`` (:meth:`token` inverted for data pieces).

        Raises:
            ValueError: ``token`` is not a data piece of this vocabulary.
        """
        idx = self._index.get(token)
        if idx is None:
            raise ValueError(f"{token!r} is not a piece of this vocabulary")
        return idx

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
            if idx == self.eos_id:
                break
            if idx >= offset:
                out.append(self.tokens[idx - offset])
        return self.tokenizer.decode(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: pieces, specials, and the tokenizer's name and options (its files, if
        any, are written by :meth:`Tokenizer.save <seq2seq_kit.tokenizers.Tokenizer.save>`)."""
        return {
            "tokenizer": self.tokenizer_name,
            "tokenizer_options": self.tokenizer.options(),
            "specials": list(SPECIALS),
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], directory: str | Path | None = None, prefix: str = ""
    ) -> Vocabulary:
        """Rebuild what :meth:`to_dict` gave, the tokenizer reading its files from
        ``directory`` with ``prefix``. Dictionaries from before tokenizer options (``char``
        and ``word`` by name) load unchanged.

        Raises:
            ValueError: other specials, an unknown tokenizer or bad options.
        """
        if list(data.get("specials", SPECIALS)) != list(SPECIALS):
            raise ValueError(f"vocabulary specials {data.get('specials')} differ from {SPECIALS}")
        name = data.get("tokenizer", "char")
        options = data.get("tokenizer_options", {})
        tokenizer = make_tokenizer(name, options, directory, prefix)
        return cls(tuple(data["tokens"]), tokenizer)


def count_pieces(texts: Iterable[str], tokenizer: str | Tokenizer = "char") -> Counter[str]:
    """How often each piece of the NFC-normalised ``texts`` occurs, as ``tokenizer`` splits
    them: what :meth:`Vocabulary.build` keeps pieces by."""
    tokenizer = as_tokenizer(tokenizer)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(tokenizer.encode(normalize(text)))
    return counts
