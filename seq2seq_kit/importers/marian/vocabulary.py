"""The joint vocabulary: Marian's pieces of ``vocab.json`` in our id order (PAD, BOS, EOS,
UNK first, :data:`~.tokenizer.SOURCE_END` last), and both sides' vocabularies with their
tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...batch import SPECIALS
from ...errors import ModelImportError
from ...vocab import Vocabulary
from .files import read_json
from .tokenizer import SOURCE_END, MarianSentencePiece


def check_tokenizer_files(source: Path) -> None:
    """Refuse a directory without ``vocab.json``, ``source.spm`` and ``target.spm``, or with
    a separate target vocabulary."""
    for name in ("vocab.json", "source.spm", "target.spm"):
        if not (source / name).is_file():
            raise ModelImportError(
                f"{source / name}: missing; the tokenizer's files come from "
                f"MarianTokenizer.save_pretrained (source.spm, target.spm, vocab.json)"
            )
    if (source / "target_vocab.json").exists():
        raise ModelImportError(
            f"{source / 'target_vocab.json'}: a separate target vocabulary "
            f"(MarianTokenizer separate_vocabs) is not supported; this import needs one "
            f"vocabulary for both sides"
        )


def marian_pieces(vocab_file: Path, settings: dict[str, Any]) -> list[str]:
    """Marian's pieces in id order, from ``vocab.json`` (piece -> id, ids 0..V-1)."""
    data = read_json(vocab_file)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in data.items()
    ):
        raise ModelImportError(f"{vocab_file}: not an object of piece -> integer id")
    size = settings["vocab_size"]
    if sorted(data.values()) != list(range(size)):
        raise ModelImportError(
            f"{vocab_file}: its ids are not 0..{size - 1} once each (config vocab_size = {size})"
        )
    pieces = [""] * size
    for piece, idx in data.items():
        pieces[idx] = piece
    return pieces


def our_order(pieces: list[str], settings: dict[str, Any], vocab_file: Path) -> list[int]:
    """Marian's id of each of our ids but PAD (which Marian lacks): BOS, EOS, UNK, the
    other pieces in Marian's order, and EOS again for :data:`SOURCE_END`."""
    if "<unk>" not in pieces:
        raise ModelImportError(f"{vocab_file}: no '<unk>' piece")
    pad, eos, unk = settings["pad_token_id"], settings["eos_token_id"], pieces.index("<unk>")
    if len({pad, eos, unk}) != 3 or not all(0 <= i < len(pieces) for i in (pad, eos)):
        raise ModelImportError(
            f"{vocab_file}: pad_token_id {pad}, eos_token_id {eos} and '<unk>' ({unk}) must be "
            f"three ids of the vocabulary"
        )
    specials = [pad, eos, unk]
    rest = [i for i in range(len(pieces)) if i not in specials]
    clash = [pieces[i] for i in rest if pieces[i] in (*SPECIALS, SOURCE_END)]
    if clash:
        raise ModelImportError(
            f"{vocab_file}: piece {clash[0]!r} is not one of Marian's specials but is named "
            f"as one of ours"
        )
    return specials + rest + [eos]


def vocabularies(source: Path, pieces: list[str], order: list[int]) -> list[Vocabulary]:
    """The source and target vocabularies: one list of pieces in our id order (without PAD
    and the other specials, which :class:`~seq2seq_kit.vocab.Vocabulary` adds), each side
    with its own ``{side}.spm``."""
    tokens = tuple(pieces[i] for i in order[len(SPECIALS) - 1 : -1]) + (SOURCE_END,)
    sides = []
    for side in ("source", "target"):
        spm_file = source / f"{side}.spm"
        try:
            tokenizer = MarianSentencePiece(spm_file.read_bytes(), side == "source")
        except ValueError as exc:
            raise ModelImportError(f"{spm_file}: {exc}") from None
        sides.append(Vocabulary(tokens, tokenizer))
    return sides
