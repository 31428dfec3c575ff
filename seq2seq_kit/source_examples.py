"""A few example inputs of a model, chosen from the source texts it was validated on
(topped up from those it was trained on) when training starts, and kept in its run record
(``meta.examples``), so that a first try with the model (the server's web page,
``seq2seq-kit info``) starts from text the model reads.

The choice is deterministic: the same sources, ids and vocabulary give the same examples,
so a resumed run records the examples of the run it continues.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from .data import Pair
from .vocab import Vocabulary

#: How many examples a model keeps.
EXAMPLES = 5
#: The most sources read to choose them: the first ones, in the order of the data (a
#: validation split is drawn at random, so these are a sample of it); a corpus decodes
#: each on demand, and choosing stays quick however large the data.
SCANNED = 1000
#: The longest example, in characters: an example is something to read at a glance.
MAX_CHARS = 200


def source_examples(
    pairs: Sequence[Pair],
    ids: Sequence[Sequence[int]],
    vocab: Vocabulary,
    count: int = EXAMPLES,
) -> list[str]:
    """Up to ``count`` distinct source texts worth trying, shortest first.

    A text qualifies when it is not blank, holds at most :data:`MAX_CHARS` characters and
    no control character (a tab, a line break: one text is one line of input), and
    ``vocab`` encodes it to exactly its ids row, none of them ``<unk>``: the model reads it
    as it read it in training, and the server's unknown-character check passes it. Of the
    qualifying texts among the first :data:`SCANNED`, ranked by their number of pieces
    (then characters, then order in the data), the examples are spread evenly over the
    shorter half (at least ``count`` of them): short ones are preferred, yet a few
    typical lengths show.

    Args:
        pairs: (source, target) pairs, as the data holds them (only sources are read,
            and only the first :data:`SCANNED`: a corpus's pairs may decode on demand).
        ids: the source id rows the model was given for them (no BOS/EOS), one per pair,
            in the same order (int lists or arrays).
        vocab: the model's source vocabulary.
        count: how many examples at most, >= 1.

    Raises:
        ValueError: ``count`` < 1.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    ranked: list[tuple[int, int, int, str]] = []
    seen: set[str] = set()
    for index in range(min(len(pairs), len(ids), SCANNED)):
        text = pairs[index][0]
        if text in seen or not _readable(text):
            continue
        row = [int(i) for i in ids[index]]
        if not row or vocab.unk_id in row:
            continue
        # a corpus's text is decoded from its ids; it must read back as those ids
        if vocab.encode(text, unknown="replace") != row:
            continue
        seen.add(text)
        ranked.append((len(row), len(text), index, text))
    ranked.sort()
    pool = ranked[: max(count, (len(ranked) + 1) // 2)]
    if len(pool) <= count:
        return [text for *_, text in pool]
    if count == 1:
        return [pool[0][-1]]
    last = len(pool) - 1
    return [pool[round(k * last / (count - 1))][-1] for k in range(count)]


def run_examples(
    valid: tuple[Sequence[Pair], Sequence[Sequence[int]]],
    train: tuple[Sequence[Pair], Sequence[Sequence[int]]],
    vocab: Vocabulary,
    count: int = EXAMPLES,
) -> list[str]:
    """A training run's examples: :func:`source_examples` of its validation ``valid``
    (pairs, source id rows), topped up from its training ``train`` when fewer than
    ``count`` validation sources qualify (none without validation pairs; a small
    validation split may hold only characters training never saw): validation ones first,
    each part shortest first, no text twice."""
    examples = source_examples(*valid, vocab, count)
    if len(examples) < count:
        more = source_examples(*train, vocab, count)
        examples += [text for text in more if text not in examples][: count - len(examples)]
    return examples


def _readable(text: str) -> bool:
    """Not blank, not over :data:`MAX_CHARS`, and no control character (category Cc)."""
    return (
        bool(text.strip())
        and len(text) <= MAX_CHARS
        and not any(unicodedata.category(c) == "Cc" for c in text)
    )
