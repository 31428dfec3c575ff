"""Attention weights, dropout, learning-rate changes and exact resumption."""

from __future__ import annotations

import numpy as np
import pytest

from ..decoding import beam_search, greedy
from ..vocab import Vocabulary, pad
from .base import (
    BackendTestBase,
    attention_specs,
    family_specs,
    mixed_batch,
    perturbed_weights,
    requires,
    uses_step,
    without_dropout,
)

VOCAB = Vocabulary(tuple("abcdefghi"))  # 13 target ids, as the variants' tgt_vocab_size


class FeatureTests(BackendTestBase):
    def _attention_specs(self):
        specs = attention_specs(self.backend())
        if not specs:
            pytest.skip(f"backend {self.backend_name!r} builds no attention model")
        return specs

    @uses_step
    def test_attention_weights_of_each_step(self):
        for spec in self._attention_specs():
            self._check_attention_weights(spec)

    def _check_attention_weights(self, spec):
        model = self.build(spec)
        model.set_weights(perturbed_weights(spec, 5))
        batch = mixed_batch(spec)
        state = model.encode(batch.src_ids, batch.src_lengths)
        assert model.attention(state) is None
        for t in range(3):
            _, state = model.step(batch.tgt_in[:, t].copy(), state)
            weights = np.asarray(model.attention(state))
            assert weights.shape == batch.src_ids.shape and weights.dtype == np.float32
            real = np.arange(weights.shape[1])[None, :] < batch.src_lengths[:, None]
            assert np.all(weights[~real] == 0.0)
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
            assert np.all(weights >= 0.0)

    @uses_step
    def test_attention_over_an_empty_source_is_zero(self):
        for spec in self._attention_specs():
            self._check_empty_source(spec)

    def _check_empty_source(self, spec):
        model = self.build(spec)
        model.set_weights(perturbed_weights(spec, 5))
        src, lengths = pad([[4, 5, 6], []]), np.array([3, 0], dtype=np.int32)
        log_probs, state = model.step(np.array([1, 1], np.int32), model.encode(src, lengths))
        weights = np.asarray(model.attention(state))
        assert weights.shape == (2, 3)
        np.testing.assert_allclose(weights[0].sum(), 1.0, atol=1e-5)
        assert np.all(weights[1] == 0.0) and np.all(np.isfinite(log_probs))

    @uses_step
    def test_attention_matches_reference(self):
        for spec in self._attention_specs():
            self._check_attention_reference(spec)

    def _check_attention_reference(self, spec):
        weights = perturbed_weights(spec, 6)
        model, ref = self.build(spec), self.reference(spec)
        model.set_weights(weights)
        ref.set_weights(weights)
        batch = mixed_batch(spec)
        states = [m.encode(batch.src_ids, batch.src_lengths) for m in (model, ref)]
        for t in range(batch.tgt_in.shape[1]):
            prev = batch.tgt_in[:, t].copy()
            states = [m.step(prev, s)[1] for m, s in zip((model, ref), states, strict=True)]
            got, expected = (m.attention(s) for m, s in zip((model, ref), states, strict=True))
            np.testing.assert_allclose(got, expected, atol=1e-5)

    @uses_step
    @requires("beam")
    def test_attention_state_survives_reorder(self):
        for spec in self._attention_specs():
            self._check_reorder(spec)

    def _check_reorder(self, spec):
        model = self.build(spec)
        model.set_weights(perturbed_weights(spec, 8))
        rows = [[4, 5, 6, 7, 8, 9, 10, 4, 5], [6], [7, 8, 9], [10, 4]]
        src, lengths = pad(rows), np.array([len(r) for r in rows], dtype=np.int32)
        together = beam_search(model, src, lengths, VOCAB, 8, beam=3, n_best=2)
        greedy_together = greedy(model, src, lengths, VOCAB, 8)
        for i, row in enumerate(rows):
            one, n = pad([row]), np.array([len(row)], dtype=np.int32)
            alone = beam_search(model, one, n, VOCAB, 8, beam=3, n_best=2)[0]
            assert [h.ids for h in alone] == [h.ids for h in together[i]]
            assert greedy(model, one, n, VOCAB, 8)[0].ids == greedy_together[i].ids

    @uses_step
    @requires("dropout")
    def test_dropout_only_in_training_and_seeded(self):
        # no dropout in evaluation (every backend declaring it, inference-only ones too:
        # a model trained with dropout loads and decodes as without); seeded masks in
        # training (backends that train)
        for dropped in family_specs(self.backend(), last=True):
            if dropped != without_dropout(dropped):
                self._check_dropout(dropped, without_dropout(dropped))

    def _check_dropout(self, dropped, plain):
        weights = perturbed_weights(dropped, 9)
        batch = mixed_batch(dropped)
        with_dropout, without = self.build(dropped, seed=2), self.build(plain, seed=2)
        for m in (with_dropout, without):
            m.set_weights(weights)
        assert with_dropout.loss(batch) == pytest.approx(without.loss(batch), abs=1e-6)
        np.testing.assert_allclose(
            with_dropout.log_probs(batch), without.log_probs(batch), atol=1e-6
        )
        if "train" not in self.backend().capabilities:
            return
        runs = []
        for _ in range(2):
            m = self.build(dropped, seed=2)
            m.set_weights(weights)
            runs.append([m.train_step(batch) for _ in range(3)])
        assert runs[0] == runs[1]
        undropped = [without.train_step(batch) for _ in range(3)]
        assert runs[0][0] != pytest.approx(undropped[0], abs=1e-7)

    @requires("train")
    def test_learning_rate_can_be_changed(self):
        for spec in family_specs(self.backend()):
            self._check_learning_rate(spec)

    def _check_learning_rate(self, spec):
        model = self.build(spec)
        before = model.get_weights()
        model.set_learning_rate(0.0)
        model.train_step(mixed_batch(spec))
        for name, value in model.get_weights().items():
            np.testing.assert_array_equal(value, before[name], err_msg=name)
        model.set_learning_rate(0.01)
        model.train_step(mixed_batch(spec))
        assert any(not np.array_equal(v, before[k]) for k, v in model.get_weights().items())

    @requires("train", "resume")
    def test_resume_repeats_uninterrupted_training(self):
        # the plainest and the richest model of each architecture
        for spec in set(family_specs(self.backend()) + family_specs(self.backend(), True)):
            batch, other = mixed_batch(spec), mixed_batch(spec, seed=3)
            straight = self.build(spec, seed=4)
            for b in (batch, other, batch, other, batch, other):
                straight.train_step(b)
            first = self.build(spec, seed=4)
            for b in (batch, other, batch):
                first.train_step(b)
            weights, opt = first.get_weights(), first.optimizer_state()
            assert int(opt["step"]) == 3
            resumed = self.build(spec, seed=11)  # a different start: everything is restored
            resumed.set_weights(weights)
            resumed.set_optimizer_state(opt)
            for b in (other, batch, other):
                resumed.train_step(b)
            for name, value in straight.get_weights().items():
                np.testing.assert_allclose(
                    resumed.get_weights()[name], value, atol=1e-7, rtol=0, err_msg=name
                )

    @requires("train", "resume")
    def test_optimizer_state_is_validated(self):
        for spec in family_specs(self.backend()):
            self._check_optimizer_state(spec)

    def _check_optimizer_state(self, spec):
        model = self.build(spec)
        model.train_step(mixed_batch(spec))
        state = model.optimizer_state()
        assert {"step", "learning_rate", "seed"} <= set(state)
        del state["m/decoder.output.bias"]
        with pytest.raises(ValueError, match="decoder.output.bias"):
            model.set_optimizer_state(state)
