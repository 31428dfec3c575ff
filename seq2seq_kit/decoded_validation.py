"""Decoded validation (``train.valid_metrics``): at each validation, the first
``train.valid_decode_limit`` distinct validation sources decoded as ``translate`` decodes
them (the core's search, outputs detokenized by the target vocabulary) and scored against
all their references (grouped as ``evaluate`` groups them) by :mod:`seq2seq_kit.metrics`.

Training builds it (:func:`decoded_validation`), since it knows the text; the trainer, which
works on ids, calls it as ``scoring(model, group)`` for the scores, the same on every rank
of a data-parallel run: each rank decodes every ``world_size``-th source from its rank on,
as :func:`seq2seq_kit.trainer.evaluate` shares the pairs, and the metrics' counts are summed
over the ranks (:func:`seq2seq_kit.metrics.statistics`), so the scores are one process's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .backend import Model
from .config import Config, DecodeConfig
from .config.decode import SAMPLING_DEFAULTS
from .data import Pair
from .decoding import Search, decode
from .errors import BackendError
from .metrics import from_statistics, group_references, statistics
from .runtime import ProcessGroup
from .translator import Translator
from .vocab import Vocabulary


@dataclass(frozen=True)
class DecodedValidation:
    """The sources a validation decodes and what their outputs are scored against.

    Attributes:
        sources: the token ids of each distinct source (None for one without tokens, whose
            output is empty, as ``translate`` answers a blank text).
        references: every target of each source, in the data's order.
        target_vocab: turns output ids into text.
        search: greedy decoding or beam search, checked against the backend.
        metrics: names of :data:`seq2seq_kit.metrics.METRICS` to compute.
    """

    sources: list[list[int] | None]
    references: list[list[str]]
    target_vocab: Vocabulary
    search: Search
    metrics: tuple[str, ...]

    def __call__(self, model: Model, group: ProcessGroup) -> dict[str, float]:
        """Decode the sources with ``model`` and score the outputs: ``{metric: score}``
        (chrF, BLEU 0..100 and TER from 0, in percent; exact match 0..1, CER and token error
        rate fractions from 0; the error rates pass 100 or 1 when outputs insert more than
        the references hold), the same on every
        rank of ``group``, whose ranks must all call it (one ``all_reduce``).

        Raises:
            OutOfMemory: decoding ran out of memory, naming the decode settings.
        """
        mine = range(group.rank, len(self.sources), group.world_size)
        found = decode(model, [self.sources[i] for i in mine], self.target_vocab, self.search)
        outputs = [hypotheses[0].text for hypotheses in found]
        counts = statistics(outputs, [self.references[i] for i in mine], self.metrics)
        if group.world_size > 1:
            counts = group.all_reduce(counts)
        return from_statistics(counts, self.metrics)


def decoded_validation(
    cfg: Config, translator: Translator, pairs: Sequence[Pair], source_ids: Sequence[Sequence[int]]
) -> DecodedValidation | None:
    """The decoded validation ``cfg.train`` asks for (None when ``valid_metrics`` is
    empty) of ``translator``'s model on ``pairs``, the text pairs a run validates on, whose
    sources encode to ``source_ids`` (the trainer's ids of the same pairs, in order).

    The first ``valid_decode_limit`` distinct sources are kept, each with every target it
    has among ``pairs`` as a reference. They are decoded with ``valid_beam`` (1: greedy) and
    the ``[decode]`` table's ``length_penalty``, ``early_stopping``,
    ``max_length`` (default: the model's cap,
    :meth:`~seq2seq_kit.translator.Translator.decoding_limit`), ``batch_size`` and output
    controls (``min_length``, ``no_repeat_ngram_size``, ``banned_tokens``), never by
    sampling: a validation compares checkpoints, so its decoding is a search. It scores
    the model's own outputs: ``replace_unk`` and ``alignments`` are left off.

    Raises:
        BackendError: ``valid_beam`` above 1 for a backend without the ``beam`` capability.
        OptionError: an output control that does not fit the model (a banned token its
            target vocabulary lacks...).
    """
    train = cfg.train
    if not train.valid_metrics:
        return None
    if train.valid_beam > 1 and "beam" not in translator.capabilities:
        raise BackendError(
            f"train.valid_beam = {train.valid_beam}: backend {translator.backend!r} does not "
            f"declare the 'beam' capability; validate greedily (valid_beam = 1) or choose "
            f"another backend"
        )
    # a validation scores the model's own outputs: no <unk> replaced, no alignments read
    searched = {
        **cfg.decode.model_dump(),
        **SAMPLING_DEFAULTS,
        "sampling": False,
        "alignments": False,
        "replace_unk": False,
        "replace_unk_table": None,
    }
    options = DecodeConfig.model_validate({**searched, "beam": train.valid_beam, "n_best": 1})
    search = translator.plan(options)
    grouped, references = group_references(pairs)
    first: dict[str, int] = {}  # the pair whose ids stand for its source
    for i, (source, _) in enumerate(pairs):
        first.setdefault(source, i)
    kept = range(min(train.valid_decode_limit, len(grouped)))
    sources = [[int(t) for t in source_ids[first[grouped[k]]]] or None for k in kept]
    return DecodedValidation(
        sources=sources,
        references=[references[k] for k in kept],
        target_vocab=translator.target_vocab,
        search=search,
        metrics=tuple(train.valid_metrics),
    )
