"""Word alignments from attention, and the ``<unk>`` replacement they serve
(``[decode] alignments`` and ``replace_unk``).

An output token's alignment is the source position its attention weights are highest at
(the argmax; the lowest position on ties), read from one teacher-forced pass of the decoder
over the chosen hypotheses (:func:`forced_argmax`, which reads the weights
:func:`seq2seq_kit.searches.forced_attention` gives but keeps only each step's argmax), so
that it serves greedy decoding, beam search's n-best and sampling alike, after the search
and only when asked for. This is what fairseq's ``--print-alignment``, Marian's
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
from .searches import Hypothesis
from .vocab import PAD, SPECIALS, Vocabulary

#: One alignment: ``(source position, output position)`` pairs, one per output token.
Alignment = tuple[tuple[int, int], ...]

#: The most hypotheses :func:`align` forces through the decoder together: the pass holds
#: the decoder states and one step's attention weights of this many hypotheses at a time,
#: however many a search returned (a beam's n-best of every text of a batch).
ALIGN_CHUNK = 64


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
    ``src_lengths``, its hypotheses) with its :attr:`~Hypothesis.alignment`, the
    hypotheses of every row forced through the decoder :data:`ALIGN_CHUNK` at a time
    (:func:`forced_argmax`): memory holds one int per output token, never a hypothesis's
    weights [outputs, S].

    Raises:
        whatever ``model`` raises (out of memory: the caller names the decoding sizes).
    """
    rows = [row for row, hyps in enumerate(found) for _ in hyps]
    flat = [h for hyps in found for h in hyps]
    out: list[list[Hypothesis]] = [[] for _ in found]
    for start in range(0, len(flat), ALIGN_CHUNK):
        index = np.array(rows[start : start + ALIGN_CHUNK], dtype=np.int64)
        hyps = flat[start : start + ALIGN_CHUNK]
        best = forced_argmax(model, src_ids[index], src_lengths[index], hyps, bos_id)
        for row, hyp, positions in zip(index, hyps, best, strict=True):
            outputs = len(hyp.ids) if src_lengths[row] > 0 else 0
            alignment = tuple((int(i), j) for j, i in enumerate(positions[:outputs]))
            out[row].append(replace(hyp, alignment=alignment))
    return out


def forced_argmax(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    hypotheses: Sequence[Hypothesis],
    bos_id: int,
) -> np.ndarray:
    """Per hypothesis, per output token, the source position its attention weights are
    highest at (the lowest on ties, among the first ``src_lengths[k]`` columns): int32
    [len(hypotheses), T], T the most ids a hypothesis holds, entries past a hypothesis's
    ids 0 (as are all of a model without attention). Row ``k`` of int32 [B, S]
    ``src_ids`` is the source of ``hypotheses[k]``.

    The decoder is fed BOS then each hypothesis's ids, one ``step`` each (teacher forcing,
    as :func:`seq2seq_kit.searches.forced_attention` feeds it, whose rows' argmax this
    equals), and only the argmax of each step's ``model.attention(state)`` is kept: memory
    holds O(hypotheses x T) ints and one step's weights [B, S], not a weights matrix per
    hypothesis.
    """
    batch, width = src_ids.shape
    steps = max((len(h.ids) for h in hypotheses), default=0)
    best = np.zeros((batch, steps), dtype=np.int32)
    if batch == 0 or steps == 0:
        return best
    # a row's steps past its own ids are discarded (their input is PAD, a valid id), which
    # keeps one batch with no reordering
    fed = np.full((batch, steps), PAD, dtype=np.int32)
    for k, h in enumerate(hypotheses):
        fed[k, : len(h.ids)] = (bos_id, *h.ids[:-1])[: len(h.ids)]
    beyond = np.arange(width)[None, :] >= np.asarray(src_lengths)[:, None]  # padding
    state = model.encode(src_ids, src_lengths)
    for t in range(steps):
        _, state = model.step(fed[:, t], state)
        weights = model.attention(state)
        if weights is not None:
            best[:, t] = np.where(beyond, -np.inf, weights).argmax(axis=1)
    return best


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
