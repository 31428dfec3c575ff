"""Ensembles through the backend (:mod:`seq2seq_kit.ensemble`): the backend's models as
members of an ensemble, beside the NumPy reference's or beside themselves, each member
stepping a decoder state of its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..decoding import beam_search, greedy
from ..ensemble import EnsembleModel
from ..vocab import Vocabulary, pad
from .base import (
    BackendTestBase,
    assert_same_hypotheses,
    family_specs,
    perturbed_weights,
    uses_step,
    without_dropout,
)

#: The suite's target vocabulary: ids 4..12 are "a".."i" (the specs' 13 target ids).
VOCAB = Vocabulary(tuple("abcdefghi"))
#: Sources of lengths 1 to 9.
ROWS = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6, 2])]
WEIGHTS = (0.6, 0.4)


class EnsembleTests(BackendTestBase):
    def _ensemble_searches(self, model: Any) -> list[list[list[Any]]]:
        """Greedy decoding and, with ``beam``, beam 3 with 2-best lists of :data:`ROWS`."""
        src = pad(ROWS)
        lengths = np.array([len(r) for r in ROWS], dtype=np.int32)
        found = [[[h] for h in greedy(model, src, lengths, VOCAB, 12)]]
        if "beam" in self.backend().capabilities:
            found.append(beam_search(model, src, lengths, VOCAB, 12, 3, 2))
        return found

    def _same_weights(self, spec: Any, seed: int) -> tuple[Any, Any]:
        """The backend's model and the reference's, both with the same random weights."""
        weights = perturbed_weights(spec, seed)
        mine, reference = self.build(spec), self.reference(spec)
        mine.set_weights(weights)
        reference.set_weights(weights)
        return mine, reference

    @uses_step
    def test_an_ensemble_of_a_model_with_itself_is_the_model(self):
        # one model object stepping two states in turn: each state must stay its own
        for spec in family_specs(self.backend()):
            model = self.build(without_dropout(spec))
            model.set_weights(perturbed_weights(spec, 5))
            alone = self._ensemble_searches(model)
            twice = self._ensemble_searches(EnsembleModel([model, model], WEIGHTS))
            for got, expected in zip(twice, alone, strict=True):
                assert_same_hypotheses(got, expected, atol=1e-6)

    @uses_step
    def test_an_ensemble_beside_the_reference_decodes_as_on_the_reference(self):
        # members on two backends score as on one within 1e-5, whichever member is whose
        for spec in family_specs(self.backend()):
            spec = without_dropout(spec)
            mine_a, reference_a = self._same_weights(spec, 3)
            mine_b, reference_b = self._same_weights(spec, 4)
            expected = self._ensemble_searches(EnsembleModel([reference_a, reference_b], WEIGHTS))
            for members in ([mine_a, reference_b], [reference_a, mine_b]):
                found = self._ensemble_searches(EnsembleModel(members, WEIGHTS))
                for got, wanted in zip(found, expected, strict=True):
                    assert_same_hypotheses(got, wanted, atol=1e-5)
