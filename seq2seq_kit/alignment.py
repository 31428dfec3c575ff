"""Word alignments from attention, and the ``<unk>`` replacement they serve
(``[decode] alignments`` and ``replace_unk``).

An output token's alignment is the source position its attention weights are highest at
(the argmax; the lowest position on ties), read from one teacher-forced pass of the decoder
over the chosen hypotheses (:func:`seq2seq_kit.searches.forced_attention`), so that it
serves greedy decoding, beam search's n-best and sampling alike, after the search and
only when asked for. This is what fairseq's ``--print-alignment``, Marian's
``--alignment`` (hard) and CTranslate2's ``return_attention`` give: an RNN's Luong
attention; a Transformer's top decoder layer's cross-attention averaged over its heads
(docs/contract.md), a weaker guide to word correspondence than a trained aligner's.

Positions count the model's tokens (characters for ``char``, words for ``word``,
SentencePiece pieces for ``sentencepiece``), not words of a subword model: no word-level
mapping is made.

Replacing ``<unk>`` is Luong et al. 2015 ("Addressing the Rare Word Problem in Neural
Machine Translation") as OpenNMT's ``-replace_unk`` does it: each output ``<unk>`` becomes
the text of the source token it is aligned to (:func:`source_texts`), or that text's entry
in a phrase table (:mod:`seq2seq_kit.phrase_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .backend import Model
from .phrase_table import PhraseTable
from .searches import Hypothesis, forced_attention
from .vocab import SPECIALS, Vocabulary

#: One alignment: ``(source position, output position)`` pairs, one per output token.
Alignment = tuple[tuple[int, int], ...]


def argmax_alignment(weights: np.ndarray, outputs: int, source_length: int) -> Alignment:
    """The ``(i, j)`` pairs of ``outputs`` output tokens: ``i`` the argmax over the first
    ``source_length`` columns of row ``j`` of ``weights`` (float32 [rows >= outputs, S]),
    the lowest position on ties."""
    if outputs == 0 or source_length == 0:
        return ()
    best = np.asarray(weights)[:outputs, :source_length].argmax(axis=1)
    return tuple((int(i), j) for j, i in enumerate(best))


def align(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    found: Sequence[Sequence[Hypothesis]],
    bos_id: int,
) -> list[list[Hypothesis]]:
    """Each hypothesis of ``found`` (per row of the int32 [B, S] sources ``src_ids`` of
    ``src_lengths``, its hypotheses) with its :attr:`~Hypothesis.alignment`, every
    hypothesis of every row forced through the decoder in one batch.

    Raises:
        whatever ``model`` raises (out of memory: the caller names the decoding sizes).
    """
    rows = [row for row, hyps in enumerate(found) for _ in hyps]
    if not rows:
        return [list(hyps) for hyps in found]
    flat = [h for hyps in found for h in hyps]
    index = np.array(rows, dtype=np.int64)
    weights = forced_attention(model, src_ids[index], src_lengths[index], flat, bos_id)
    out: list[list[Hypothesis]] = [[] for _ in found]
    for row, hyp, w in zip(rows, flat, weights, strict=True):
        alignment = argmax_alignment(w, len(hyp.ids), int(src_lengths[row]))
        out[row].append(replace(hyp, alignment=alignment))
    return out


def source_texts(text: str, vocab: Vocabulary) -> list[str]:
    """The text of each source token of ``text``, in order: the tokenizer's decoding of that
    token alone (a character for ``char``, a word for ``word``, a SentencePiece piece
    without its ``▁`` mark). One per id of :func:`seq2seq_kit.decoding.encode_text`, an
    unknown token's included: what replaces an ``<unk>`` aligned to it."""
    return [vocab.tokenizer.decode([piece]) for piece in vocab.pieces(text)]


def replace_unknowns(
    hyp: Hypothesis,
    source: Sequence[str],
    vocab: Vocabulary,
    table: PhraseTable | None = None,
) -> Hypothesis:
    """``hyp`` with its text rebuilt from its target ids, each UNK replaced by the text of
    the source token it is aligned to (``source[i]``, from :func:`source_texts`), or that
    text's entry in ``table``. The replacement is split by the target ``vocab``'s
    tokenizer and joined with the other pieces by it (a word of its own for ``word``;
    SentencePiece puts a space before it). ``ids``, score and alignment are unchanged.

    Raises:
        ValueError: ``hyp`` holds UNK but no alignment, or one pointing past ``source``.
    """
    unk = vocab.unk_id
    if unk not in hyp.ids:
        return hyp
    if hyp.alignment is None:
        raise ValueError("replace_unknowns: the hypothesis has no alignment")
    pieces: list[str] = []
    for (i, j), token in zip(hyp.alignment, hyp.ids, strict=True):
        if token == unk:
            if not 0 <= i < len(source):
                raise ValueError(
                    f"replace_unknowns: output token {j} is aligned to source position {i}, "
                    f"but the source has {len(source)} tokens"
                )
            text = source[i] if table is None else table.get(source[i], source[i])
            pieces.extend(vocab.pieces(text))
        elif token >= len(SPECIALS):
            pieces.append(vocab.token(token))
    return replace(hyp, text=vocab.tokenizer.decode(pieces))
