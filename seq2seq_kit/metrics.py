"""Corpus metrics against one or more references per source: exact match, character error
rate, token error rate, chrF and BLEU (the last two through sacrebleu, with its signature)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .vocab import normalize


def character_error_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Sum of Levenshtein distances (insertions, deletions, substitutions of characters)
    to the closest reference, divided by the summed length of those references, as in
    speech recognition's CER. Empty references count one character, so the rate stays
    defined."""
    from rapidfuzz.distance import Levenshtein

    edits = chars = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        best = min(refs, key=lambda r: (Levenshtein.distance(hyp, r), -len(r)))
        edits += Levenshtein.distance(hyp, best)
        chars += max(len(best), 1)
    return edits / max(chars, 1)


def token_error_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Word error rate over whitespace-separated tokens: the sum of Levenshtein distances
    (substituted, deleted and inserted tokens) to the closest reference, divided by the summed
    token counts of those references, ``(S + D + I) / N`` as speech recognition's WER (Jurafsky
    and Martin, *Speech and Language Processing*, 3rd ed., "Word Error Rate"; NIST sclite). For
    symbol-level targets such as ``"Charlie Alfa Bravo"`` each symbol counts once, where
    :func:`character_error_rate` would count its characters.

    Args:
        hypotheses: one text per source.
        references: the references of each hypothesis, at least one each.

    Returns:
        A rate ``>= 0``: 0 when every hypothesis equals a reference token for token, over 1
        when hypotheses insert more tokens than the references hold. An empty reference counts
        one token, so the rate stays defined.

    Raises:
        ValueError: ``hypotheses`` and ``references`` differ in length, or a hypothesis has
            no reference.
    """
    from rapidfuzz.distance import Levenshtein

    edits = tokens = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        hyp_tokens = hyp.split()
        # The same tie-break as the CER: among equally close references, the longest.
        best = min(
            (r.split() for r in refs), key=lambda r: (Levenshtein.distance(hyp_tokens, r), -len(r))
        )
        edits += Levenshtein.distance(hyp_tokens, best)
        tokens += max(len(best), 1)
    return edits / max(tokens, 1)


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Score ``hypotheses[i]`` against every string of ``references[i]``.

    Returns ``exact_match`` (share of hypotheses equal to one of their references, 0..1),
    ``cer`` (:func:`character_error_rate`, 0..), ``token_error_rate`` (:func:`token_error_rate`,
    WER over whitespace-separated tokens, 0..), ``chrf`` and ``bleu`` (sacrebleu's corpus
    chrF, Popovic 2015, and BLEU, Papineni et al. 2002, 0..100) and their sacrebleu
    signatures, and ``bleu_note``: why BLEU is 0 when no output is long enough to hold a
    4-gram (one-word outputs), else ``""``. Texts are NFC-normalised first, as at training.
    """
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    hyps = [normalize(h) for h in hypotheses]
    refs = [[normalize(r) for r in rs] for rs in references]
    n_streams = max(len(r) for r in refs)
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(n_streams)]
    chrf, bleu = CHRF(), BLEU()
    chrf_score = chrf.corpus_score(hyps, streams)
    bleu_score = bleu.corpus_score(hyps, streams)
    note = ""
    if bleu_score.score == 0.0 and not any(len(h.split()) >= bleu.max_ngram_order for h in hyps):
        # BLEU-4's geometric mean is 0 without a single 4-gram: not a sign of bad outputs.
        note = (
            f"BLEU is 0 because no output has {bleu.max_ngram_order} words (corpus BLEU needs "
            f"{bleu.max_ngram_order}-gram matches); judge short outputs by exact match and chrF"
        )
    return {
        "sentences": len(hyps),
        "exact_match": sum(h in rs for h, rs in zip(hyps, refs, strict=True)) / max(len(hyps), 1),
        "cer": character_error_rate(hyps, refs),
        "token_error_rate": token_error_rate(hyps, refs),
        "chrf": chrf_score.score,
        "bleu": bleu_score.score,
        "chrf_signature": str(chrf.get_signature()),
        "bleu_signature": str(bleu.get_signature()),
        "bleu_note": note,
    }


def group_references(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """Collapse pairs that share a source into one source with all its targets as
    references (Tatoeba lists several translations of many sentences), keeping the order
    of first appearance."""
    refs: dict[str, list[str]] = {}
    for source, target in pairs:
        refs.setdefault(source, []).append(target)
    return list(refs), list(refs.values())
