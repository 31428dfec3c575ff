"""The core decoder loop driven by the backend: batching, beams, truncation."""

from __future__ import annotations

import numpy as np

from ..decoding import beam_search, greedy, length_penalty, search
from ..vocab import Vocabulary, pad
from .base import (
    DIGIT_INPUTS,
    BackendTestBase,
    assert_same_hypotheses,
    family_specs,
    perturbed_weights,
    requires,
    spec_variants,
    without_dropout,
)

MIXED = ["123456789", "7", "42", "9", "5318", "1", "98765432"]  # lengths 1 to 9


def _sources(translator, texts):
    ids = [translator.source_vocab.encode(t) for t in texts]
    return pad(ids), np.array([len(i) for i in ids], dtype=np.int32)


class DecodingTests(BackendTestBase):
    def _greedy(self, model, src, lengths, vocab, max_length):
        """The core's greedy decoding of ``model``, or its own search for a backend declaring
        ``search``."""
        if "search" in self.backend().capabilities:
            return [hyps[0] for hyps in search(model, src, lengths, vocab, max_length)]
        return greedy(model, src, lengths, vocab, max_length)

    def _beam(self, model, src, lengths, vocab, max_length, beam, n_best=1):
        """The core's beam search of ``model``, or its own (``search``)."""
        decode = search if "search" in self.backend().capabilities else beam_search
        return decode(model, src, lengths, vocab, max_length, beam, n_best)

    def test_batched_greedy_equals_one_by_one(self, digits_model):
        translator, _ = digits_model
        batched = translator.hypotheses(MIXED)
        for text, hyps in zip(MIXED, batched, strict=True):
            alone = translator.hypotheses([text])[0][0]
            # ids exactly; scores within float32 noise (no framework's matmul promises
            # bit-identical rows whatever the batch size)
            assert (alone.ids, alone.truncated) == (hyps[0].ids, hyps[0].truncated)
            assert abs(alone.score - hyps[0].score) < 1e-4

    def test_batched_greedy_equals_one_by_one_untrained(self):
        # random weights: long, varied outputs stress the shrinking batch
        for spec in family_specs(self.backend()):
            self._check_batched_greedy(spec)

    def _check_batched_greedy(self, spec):
        model = self.build(spec)
        model.set_weights(perturbed_weights(spec, 7))
        vocab = Vocabulary(tuple("abcdefghi"))
        rows = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6])]
        src, lengths = pad(rows), np.array([len(r) for r in rows], dtype=np.int32)
        batched = self._greedy(model, src, lengths, vocab, 12)
        for i, row in enumerate(rows):
            one = self._greedy(model, pad([row]), np.array([len(row)], dtype=np.int32), vocab, 12)
            assert one[0].ids == batched[i].ids
            assert abs(one[0].score - batched[i].score) < 1e-4

    @requires("beam")
    def test_beam_one_equals_greedy(self, digits_model):
        translator, _ = digits_model
        src, lengths = _sources(translator, MIXED)
        vocab = translator.target_vocab
        g = greedy(translator.model, src, lengths, vocab, 20)
        b = beam_search(translator.model, src, lengths, vocab, 20, beam=1)
        assert [h.ids for h in g] == [hyps[0].ids for hyps in b]

    @requires("beam")
    def test_beam_one_equals_greedy_untrained(self):
        for spec in family_specs(self.backend()):
            model = self.build(spec)
            model.set_weights(perturbed_weights(spec, 10))
            rows = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([2, 9, 1, 5])]
            src, lengths = pad(rows), np.array([len(r) for r in rows], dtype=np.int32)
            vocab = Vocabulary(tuple("abcdefghi"))
            g = self._greedy(model, src, lengths, vocab, 12)
            b = self._beam(model, src, lengths, vocab, 12, beam=1)
            assert [h.ids for h in g] == [hyps[0].ids for hyps in b], spec
            np.testing.assert_allclose([h.score for h in g], [h[0].score for h in b], atol=1e-4)

    @requires("beam")
    def test_beam_search_keeps_the_digits(self, digits_model):
        translator, _ = digits_model
        assert translator.translate(DIGIT_INPUTS, beam=5) == translator.translate(DIGIT_INPUTS)

    @requires("beam")
    def test_n_best_larger_than_distinct_hypotheses(self, digits_model):
        translator, _ = digits_model
        lists = translator.hypotheses(["3", "7"], beam=4, n_best=40, max_length=2)
        for hyps in lists:
            keys = [(h.ids, h.truncated) for h in hyps]
            assert 1 <= len(hyps) <= 40 and len(set(keys)) == len(keys)
            assert all(len(h.ids) <= 2 for h in hyps)
            assert all(len(h.ids) == 2 for h in hyps if h.truncated)

    def test_max_length_truncation_is_flagged(self, digits_model):
        translator, _ = digits_model
        hyp = translator.hypotheses(["3"], max_length=2)[0][0]
        assert hyp.truncated and hyp.text == "th"
        full = translator.hypotheses(["3"])[0][0]
        assert not full.truncated and full.text == "three"
        assert full.score < 0.0

    @requires("beam")
    def test_untrained_model_never_emitting_eos_is_capped(self):
        for spec in family_specs(self.backend()):
            self._check_capped(spec)

    def _check_capped(self, spec):
        model = self.build(spec)
        weights = perturbed_weights(spec, 0)
        weights["decoder.output.bias"][2] = -50.0  # EOS never wins
        model.set_weights(weights)
        vocab = Vocabulary(tuple("abcdefghi"))
        src, lengths = pad([[4, 5], [6]]), np.array([2, 1], dtype=np.int32)
        for hyp in self._greedy(model, src, lengths, vocab, 7):
            assert hyp.truncated and len(hyp.ids) == 7
            assert set(hyp.text) <= set("abcdefghi")
        for hyps in self._beam(model, src, lengths, vocab, 7, beam=3, n_best=3):
            assert all(h.truncated and len(h.ids) == 7 for h in hyps)

    def test_batching_is_invisible_for_random_batches(self, digits_model):
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        translator, _ = digits_model
        texts = st.lists(st.text(alphabet="123456789", max_size=12), min_size=1, max_size=8)

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(texts)
        def check(batch):
            together = translator.hypotheses(batch)
            alone = [translator.hypotheses([t])[0] for t in batch]
            assert [h[0].ids for h in together] == [h[0].ids for h in alone]

        check()

    def test_decoding_is_a_pure_function_of_weights_and_input(self, digits_model):
        translator, path = digits_model
        from ..api import load

        search = {"beam": 3, "n_best": 2} if "beam" in self.backend().capabilities else {}
        first = translator.hypotheses(MIXED, **search)
        translator.translate(["987654321"] * 5)  # unrelated work in between
        assert translator.hypotheses(MIXED, **search) == first
        again = load(path, backend=self.backend_name)
        assert_same_hypotheses(again.hypotheses(MIXED, **search), first)

    @requires("beam")
    def test_beam_larger_than_vocabulary(self, digits_model):
        translator, _ = digits_model
        width = 3 * len(translator.target_vocab)
        hyps = translator.hypotheses(["3", "8"], beam=width, n_best=5)
        assert [h[0].text for h in hyps] == ["three", "eight"]
        assert all(len(h) == 5 for h in hyps)

    @requires("search")
    def test_search_greedy_matches_the_core_decoder(self):
        # the engine's own greedy search, against the core's decoder loop over the NumPy
        # reference with the same weights: the same ids and truncation, scores within 1e-4
        vocab = Vocabulary(tuple("abcdefghi"))
        rows = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6, 2])]
        src, lengths = pad(rows), np.array([len(r) for r in rows], dtype=np.int32)
        for spec in {without_dropout(s) for s in spec_variants(self.backend())}:
            weights = perturbed_weights(spec, 21)
            model, reference = self.build(spec), self.reference(spec)
            model.set_weights(weights)
            reference.set_weights(weights)
            target = Vocabulary(vocab.tokens[: spec.tgt_vocab_size - 4])
            for max_length in (12, 3):
                expected = greedy(reference, src, lengths, target, max_length)
                got = [hyps[0] for hyps in search(model, src, lengths, target, max_length)]
                assert [(h.ids, h.truncated) for h in got] == [
                    (h.ids, h.truncated) for h in expected
                ], spec
                np.testing.assert_allclose(
                    [h.score for h in got], [h.score for h in expected], atol=1e-4
                )

    @requires("search", "beam")
    def test_search_beam_matches_the_core_on_a_peaked_model(self):
        # on a peaked model (scaled output kernel: one clear best continuation) the engine's
        # beam search finds the core's best hypothesis; engines may keep other hypotheses
        # below it (their stopping rules differ), but each scores as the core scores it
        vocab = Vocabulary(tuple("abcdefghi"))
        rows = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6, 2])]
        src, lengths = pad(rows), np.array([len(r) for r in rows], dtype=np.int32)
        for spec in family_specs(self.backend()):
            weights = perturbed_weights(without_dropout(spec), 22)
            if "decoder.output.kernel" in weights:
                weights["decoder.output.kernel"] *= 4.0
            model, reference = self.build(spec), self.reference(without_dropout(spec))
            model.set_weights(weights)
            reference.set_weights(weights)
            for beam, n_best, alpha in ((4, 1, 0.0), (4, 3, 1.0)):
                expected = beam_search(reference, src, lengths, vocab, 10, beam, n_best, alpha)
                got = search(model, src, lengths, vocab, 10, beam, n_best, alpha)
                assert [h[0].ids for h in got] == [h[0].ids for h in expected], (beam, alpha)
                for mine, core in zip(got, expected, strict=True):
                    assert 1 <= len(mine) <= n_best
                    assert len({h.ids for h in mine}) == len(mine)
                    ranks = [
                        h.score / length_penalty(len(h.ids) + (not h.truncated), alpha)
                        for h in mine
                    ]
                    assert ranks == sorted(ranks, reverse=True)
                    scores = {h.ids: h.score for h in core}
                    for h in mine:
                        if h.ids in scores:
                            assert abs(h.score - scores[h.ids]) < 1e-4
