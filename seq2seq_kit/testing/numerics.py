"""Canonical weights, and agreement with the NumPy reference on shared weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ..batching import make_batch
from ..weights import weight_shapes
from .base import BackendTestBase, mixed_batch, perturbed_weights, spec_variants

LOG_PROB_ATOL = 1e-5
GRAD_RTOL = 1e-4


def _step_through(model, batch) -> np.ndarray:
    """Teacher-forced log-probs [B, T, V] computed with encode + step, one position a call."""
    state = model.encode(batch.src_ids, batch.src_lengths)
    out = []
    for t in range(batch.tgt_in.shape[1]):
        log_probs, state = model.step(batch.tgt_in[:, t].copy(), state)
        out.append(np.asarray(log_probs))
    return np.stack(out, axis=1)


class NumericsTests(BackendTestBase):
    def test_canonical_weight_names_shapes_dtypes(self):
        for spec in spec_variants(self.backend()):
            weights = self.build(spec).get_weights()
            assert {k: tuple(v.shape) for k, v in weights.items()} == weight_shapes(spec)
            assert all(v.dtype == np.float32 for v in weights.values())

    def test_set_get_weights_round_trip(self):
        for spec in spec_variants(self.backend()):
            model = self.build(spec)
            weights = perturbed_weights(spec, 1)
            model.set_weights(weights)
            for name, value in model.get_weights().items():
                np.testing.assert_array_equal(value, weights[name], err_msg=name)

    def test_set_weights_rejects_wrong_shape(self):
        spec = spec_variants(self.backend())[0]
        model = self.build(spec)
        weights = perturbed_weights(spec, 0)
        weights["decoder.output.bias"] = weights["decoder.output.bias"][:-1]
        with pytest.raises(ValueError, match="decoder.output.bias"):
            model.set_weights(weights)

    def test_initial_weights_follow_the_seed(self):
        spec = spec_variants(self.backend())[0]
        a, b, c = (self.build(spec, seed=s).get_weights() for s in (3, 3, 4))
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not all(np.array_equal(a[k], c[k]) for k in a)

    def test_log_probs_match_reference(self):
        for spec in spec_variants(self.backend()):
            weights = perturbed_weights(spec, 2)
            model, ref = self.build(spec), self.reference(spec)
            model.set_weights(weights)
            ref.set_weights(weights)
            batch = mixed_batch(spec)
            expected = ref.log_probs(batch)
            got = np.asarray(model.log_probs(batch))
            assert got.shape == expected.shape and got.dtype == np.float32
            mask = batch.tgt_mask.astype(bool)
            np.testing.assert_allclose(got[mask], expected[mask], atol=LOG_PROB_ATOL, rtol=0)
            stepped = _step_through(model, batch)
            np.testing.assert_allclose(stepped[mask], expected[mask], atol=LOG_PROB_ATOL, rtol=0)
            assert model.loss(batch) == pytest.approx(ref.loss(batch), abs=LOG_PROB_ATOL)

    def test_gradients_match_reference(self):
        for spec in spec_variants(self.backend()):
            weights = perturbed_weights(spec, 3)
            model, ref = self.build(spec), self.reference(spec)
            model.set_weights(weights)
            ref.set_weights(weights)
            batch = mixed_batch(spec, seed=1)
            got, expected = model.gradients(batch), ref.gradients(batch)
            assert got.keys() == expected.keys()
            for name in expected:
                scale = float(np.abs(expected[name]).max())
                np.testing.assert_allclose(
                    got[name],
                    expected[name],
                    rtol=GRAD_RTOL,
                    atol=GRAD_RTOL * scale + 1e-7,
                    err_msg=name,
                )
            # asking for gradients changes nothing
            for name, value in model.get_weights().items():
                np.testing.assert_array_equal(value, weights[name], err_msg=name)

    def test_padding_changes_nothing(self):
        spec = spec_variants(self.backend())[0]
        model = self.build(spec)
        model.set_weights(perturbed_weights(spec, 4))
        sources, targets = [[4, 5, 6], [7]], [[8, 9], [10, 11, 12]]
        batch = make_batch(sources, targets)
        extra = np.zeros((2, 2), dtype=np.int32)  # trailing PAD columns
        wide = replace(
            batch,
            src_ids=np.hstack([batch.src_ids, extra]),
            tgt_in=np.hstack([batch.tgt_in, extra]),
            tgt_out=np.hstack([batch.tgt_out, extra]),
            tgt_mask=np.hstack([batch.tgt_mask, extra.astype(np.float32)]),
        )
        assert model.loss(wide) == pytest.approx(model.loss(batch), abs=1e-6)
        g1, g2 = model.gradients(batch), model.gradients(wide)
        for name in g1:
            np.testing.assert_allclose(g1[name], g2[name], atol=1e-6, err_msg=name)

    def test_train_step_reduces_loss_and_returns_it(self):
        spec = spec_variants(self.backend())[0]
        model = self.build(spec)
        batch = mixed_batch(spec)
        before = model.loss(batch)
        first = model.train_step(batch)
        assert first == pytest.approx(before, rel=1e-4)
        for _ in range(30):
            model.train_step(batch)
        assert model.loss(batch) < before
