"""Corpus metrics against one or more references per source: exact match, character error
rate, token error rate, and chrF, BLEU and TER through sacrebleu, with its signatures.

Each metric is computed from sums of per-sentence counts (:func:`statistics`), so the
counts of several parts of a corpus add up to the corpus's: data-parallel validation scores
each rank's share and adds the counts over the ranks (:func:`from_statistics`), and gets the
score of one process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .vocab import normalize

#: The corpus metrics, in the order :func:`score` gives them and ``train.valid_metrics``
#: keeps them (the config lists the same names).
METRICS = ("chrf", "bleu", "ter", "exact_match", "cer", "token_error_rate")
#: The metrics where lower is better (rates of edits); higher is better for the others.
LOWER_IS_BETTER = frozenset({"ter", "cer", "token_error_rate"})
#: How log lines, reports and plots name each metric.
LABELS = {
    "chrf": "chrF",
    "bleu": "BLEU",
    "ter": "TER",
    "exact_match": "exact match",
    "cer": "CER",
    "token_error_rate": "token error rate",
}
#: The metrics scored in percent (sacrebleu's: chrF and BLEU 0..100, TER from 0 and past
#: 100 when outputs insert more than the references hold); the others are fractions (0..1;
#: the error rates pass 1 likewise).
PERCENT = frozenset({"chrf", "bleu", "ter"})
_SACREBLEU = ("chrf", "bleu", "ter")


def character_error_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Sum of Levenshtein distances (insertions, deletions, substitutions of characters)
    to the closest reference, divided by the summed length of those references, as in
    speech recognition's CER. Empty references count one character, so the rate stays
    defined."""
    edits, chars = _edit_counts(hypotheses, references, tokens=False)
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
    edits, tokens = _edit_counts(hypotheses, references, tokens=True)
    return edits / max(tokens, 1)


def _edit_counts(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], tokens: bool
) -> tuple[int, int]:
    """The Levenshtein edits of each hypothesis to its closest reference, and the length of
    those references (at least 1 each), summed: in characters, or in whitespace-separated
    tokens with ``tokens``. Among equally close references, the longest counts."""
    from rapidfuzz.distance import Levenshtein

    edits = length = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        units = hyp.split() if tokens else hyp
        best = min(
            (r.split() if tokens else r for r in refs),
            key=lambda r: (Levenshtein.distance(units, r), -len(r)),
        )
        edits += Levenshtein.distance(units, best)
        length += max(len(best), 1)
    return edits, length


def _sacrebleu_metric(name: str) -> Any:
    """sacrebleu's metric object of ``name`` (chrF2, BLEU-4, TER), with its defaults."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    return {"chrf": CHRF, "bleu": BLEU, "ter": TER}[name]()


def _width(name: str, metric: Any) -> int:
    """How many counts the statistics of ``name`` hold (sacrebleu's segment statistics:
    chrF's hypothesis, reference and matched n-grams per order; BLEU's lengths, then matched
    and total n-grams per order; TER's edits and reference length)."""
    if name == "chrf":
        return 3 * (metric.char_order + metric.word_order)
    if name == "bleu":
        return 2 + 2 * metric.max_ngram_order
    return 2


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")


def statistics(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Sequence[str],
) -> list[float]:
    """The counts each of ``metrics`` (names of :data:`METRICS`) is computed from, summed
    over the sentences: ``hypotheses[i]`` against every string of ``references[i]``, texts
    NFC-normalised first. The counts of the parts of a corpus add up, element by element,
    to those of the whole, which :func:`from_statistics` turns into its scores.

    chrF, BLEU and TER count through sacrebleu (``_extract_corpus_statistics``, the counts
    its corpus scores sum); exact match counts matches and sentences, the CER and the
    token error rate edits and reference length (:func:`character_error_rate`,
    :func:`token_error_rate`).

    Returns:
        float counts, the metrics' one after the other in the order of ``metrics``; zeros
        when there are no hypotheses.

    Raises:
        ValueError: ``hypotheses`` and ``references`` differ in length, a hypothesis has no
            reference, or a name is not one of :data:`METRICS`.
    """
    return _statistics(hypotheses, references, metrics, {})


def _statistics(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Sequence[str],
    objects: dict[str, Any],
) -> list[float]:
    """:func:`statistics`, keeping in ``objects`` the sacrebleu metric object of each of
    its metrics (whose signature then says the number of references)."""
    _check(hypotheses, references)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    hyps = [normalize(h) for h in hypotheses]
    refs = [[normalize(r) for r in rs] for rs in references]
    counts: list[float] = []
    for name in metrics:
        if name in _SACREBLEU:
            if name not in objects:
                objects[name] = _sacrebleu_metric(name)
            metric = objects[name]
            counts += _sacrebleu_counts(metric, _width(name, metric), hyps, refs)
        elif name == "exact_match":
            counts += [sum(h in rs for h, rs in zip(hyps, refs, strict=True)), len(hyps)]
        else:
            counts += _edit_counts(hyps, refs, tokens=name == "token_error_rate")
    return [float(c) for c in counts]


def _sacrebleu_counts(
    metric: Any, width: int, hyps: Sequence[str], refs: Sequence[Sequence[str]]
) -> list[float]:
    """The segment statistics of sacrebleu's ``metric``, summed over the sentences."""
    if not hyps:  # sacrebleu reads its reference cache when given no references
        return [0.0] * width
    # sacrebleu takes references as streams: the k-th reference of every sentence (None
    # where a sentence has fewer)
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(max(map(len, refs)))]
    summed = [0.0] * width
    for segment in metric._extract_corpus_statistics(hyps, streams):
        summed = [a + b for a, b in zip(summed, segment, strict=True)]
    return summed


def from_statistics(counts: Sequence[float], metrics: Sequence[str]) -> dict[str, float]:
    """The score of each of ``metrics`` from its counts (:func:`statistics` of the same
    ``metrics``, possibly summed over parts of a corpus): chrF, BLEU and TER 0..100 as
    sacrebleu computes them from summed counts (``_compute_score_from_stats``); exact
    match a share 0..1; the CER and the token error rate edits over reference length.

    Raises:
        ValueError: ``counts`` is not as long as the statistics of ``metrics``.
    """
    objects = {name: _sacrebleu_metric(name) for name in metrics if name in _SACREBLEU}
    widths = [_width(name, objects.get(name)) for name in metrics]
    if len(counts) != sum(widths):
        raise ValueError(
            f"{len(counts)} counts, but the statistics of {', '.join(metrics)} hold {sum(widths)}"
        )
    scores, start = {}, 0
    for name, width in zip(metrics, widths, strict=True):
        part = [float(c) for c in counts[start : start + width]]
        start += width
        if name in objects:
            scores[name] = float(objects[name]._compute_score_from_stats(part).score)
        else:
            scores[name] = part[0] / max(part[1], 1.0)
    return scores


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Score ``hypotheses[i]`` against every string of ``references[i]``.

    Returns ``exact_match`` (share of hypotheses equal to one of their references, 0..1),
    ``cer`` (:func:`character_error_rate`, 0..), ``token_error_rate`` (:func:`token_error_rate`,
    WER over whitespace-separated tokens, 0..), ``chrf``, ``bleu`` and ``ter`` (sacrebleu's
    corpus chrF, Popovic 2015, BLEU, Papineni et al. 2002, and TER, Snover et al. 2006,
    0..100, lower is better for TER) and their sacrebleu signatures, and ``bleu_note``: why
    BLEU is 0 when no output is long enough to hold a 4-gram (one-word outputs), else
    ``""``. Texts are NFC-normalised first, as at training; the scores are
    :func:`from_statistics` of :func:`statistics`.

    Raises:
        ValueError: ``hypotheses`` and ``references`` differ in length, or a hypothesis has
            no reference.
    """
    objects: dict[str, Any] = {}
    scores = from_statistics(_statistics(hypotheses, references, METRICS, objects), METRICS)
    hyps = [normalize(h) for h in hypotheses]
    order = objects["bleu"].max_ngram_order
    note = ""
    if scores["bleu"] == 0.0 and not any(len(h.split()) >= order for h in hyps):
        # BLEU-4's geometric mean is 0 without a single 4-gram: not a sign of bad outputs.
        note = (
            f"BLEU is 0 because no output has {order} words (corpus BLEU needs "
            f"{order}-gram matches); judge short outputs by exact match and chrF"
        )
    return {
        "sentences": len(hyps),
        "exact_match": scores["exact_match"],
        "cer": scores["cer"],
        "token_error_rate": scores["token_error_rate"],
        "chrf": scores["chrf"],
        "bleu": scores["bleu"],
        "ter": scores["ter"],
        # the signatures say the number of references, known once the counts were taken
        **{f"{name}_signature": str(objects[name].get_signature()) for name in _SACREBLEU},
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
