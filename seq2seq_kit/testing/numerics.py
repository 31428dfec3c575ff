"""Canonical weights, and agreement with the NumPy reference on shared weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ..architectures import frozen_weights
from ..batching import Batch, make_batch
from ..ema import ema_update
from ..spec import OptimizerSpec, Spec
from ..weights import weight_shapes
from .base import (
    BackendTestBase,
    family_specs,
    mixed_batch,
    perturbed_weights,
    requires,
    spec_variants,
    uses_step,
)

LOG_PROB_ATOL = 1e-5
GRAD_RTOL = 1e-4


def _rows(batch: Batch, rows: slice) -> tuple[list[list[int]], list[list[int]]]:
    """The unpadded sources and targets of ``rows`` of ``batch`` (for re-batching)."""
    src = zip(batch.src_ids[rows], batch.src_lengths[rows], strict=True)
    tgt = zip(batch.tgt_in[rows], batch.tgt_lengths[rows], strict=True)
    sources = [ids[:n].tolist() for ids, n in src]
    targets = [ids[1:n].tolist() for ids, n in tgt]  # tgt_in is BOS + target
    return sources, targets


def smoothed_loss(log_probs: np.ndarray, batch: Batch, epsilon: float) -> float:
    """The contract's loss with label smoothing ``epsilon``, from teacher-forced
    log-probabilities [B, T, V] (``OptimizerSpec.label_smoothing``)."""
    lp = log_probs.astype(np.float64)
    nll = -np.take_along_axis(lp, batch.tgt_out[..., None].astype(np.int64), axis=-1)[..., 0]
    per_token = (1.0 - epsilon) * nll - epsilon * lp.mean(axis=-1)
    return float((per_token * batch.tgt_mask).sum() / batch.tgt_mask.sum())


def _step_through(model, batch) -> np.ndarray:
    """Teacher-forced log-probs [B, T, V] computed with encode + step, one position a call."""
    state = model.encode(batch.src_ids, batch.src_lengths)
    out = []
    for t in range(batch.tgt_in.shape[1]):
        log_probs, state = model.step(batch.tgt_in[:, t].copy(), state)
        out.append(np.asarray(log_probs))
    return np.stack(out, axis=1)


def _with_table(spec: Spec) -> Spec:
    """A Transformer ``spec`` with a position ``"table"`` (an RNN as it is)."""
    return replace(spec, positions="table") if spec.architecture == "transformer" else spec


def _frozen_names(spec: Spec) -> tuple[str, ...]:
    """What the freezing check freezes: what training always does (a position table), the
    source embedding when there is one, the first kernel of the encoder (in some backends
    one part of a packed parameter) and the output bias."""
    layout = weight_shapes(spec)
    kernel = next(n for n in layout if n.startswith("encoder.") and n.endswith(".kernel"))
    chosen = {kernel, "decoder.output.bias"} | {"encoder.embedding"} & set(layout)
    return frozen_weights(spec) + tuple(sorted(chosen))


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

    @uses_step
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

    @requires("train")
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

    @uses_step
    def test_incremental_decoding_equals_teacher_forcing(self):
        # encode + step one position at a time gives what the full teacher-forced pass
        # gives, at every real position, for every architecture (a Transformer's key/value
        # cache included)
        for spec in spec_variants(self.backend()):
            model = self.build(spec)
            model.set_weights(perturbed_weights(spec, 12))
            batch = mixed_batch(spec, seed=4)
            mask = batch.tgt_mask.astype(bool)
            full = np.asarray(model.log_probs(batch))
            stepped = _step_through(model, batch)
            np.testing.assert_allclose(
                stepped[mask], full[mask], atol=LOG_PROB_ATOL, rtol=0, err_msg=str(spec)
            )

    @requires("train")
    def test_accumulated_batches_make_one_update(self):
        # train_step([b1, b2]) is one update with the gradient of the concatenated batch
        for spec in family_specs(self.backend()):
            batch = mixed_batch(spec, seed=5)
            whole = make_batch(*_rows(batch, slice(None)))
            parts = [
                make_batch(*_rows(batch, slice(0, 2))),
                make_batch(*_rows(batch, slice(2, None))),
            ]
            weights = perturbed_weights(spec, 13)
            # Adam divides by sqrt(v) + epsilon: with its usual 1e-7, a gradient that is 0 up
            # to rounding (a key bias, which softmax cancels) would step by up to the learning
            # rate in a direction set by the rounding; 1e-3 keeps such noise negligible.
            adam = OptimizerSpec(epsilon=1e-3)
            one = self.build(spec, seed=1, optimizer=adam)
            two = self.build(spec, seed=1, optimizer=adam)
            one.set_weights(weights)
            two.set_weights(weights)
            for _ in range(2):
                loss_whole = one.train_step(whole)
                loss_parts = two.train_step(parts)
                assert loss_parts == pytest.approx(loss_whole, abs=LOG_PROB_ATOL), spec
            got = two.get_weights()
            for name, value in one.get_weights().items():
                np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0, err_msg=name)

    @requires("train")
    def test_label_smoothing_enters_the_loss(self):
        smoothing = OptimizerSpec(label_smoothing=0.1)
        for spec in family_specs(self.backend()):
            weights = perturbed_weights(spec, 14)
            model, ref = self.build(spec, optimizer=smoothing), self.reference(spec, smoothing)
            model.set_weights(weights)
            ref.set_weights(weights)
            batch = mixed_batch(spec, seed=6)
            log_probs = np.asarray(model.log_probs(batch))
            assert model.loss(batch) == pytest.approx(
                smoothed_loss(log_probs, batch, 0.1), abs=LOG_PROB_ATOL
            )
            got, expected = model.gradients(batch), ref.gradients(batch)
            for name in expected:
                scale = float(np.abs(expected[name]).max())
                np.testing.assert_allclose(
                    got[name],
                    expected[name],
                    rtol=GRAD_RTOL,
                    atol=GRAD_RTOL * scale + 1e-7,
                    err_msg=name,
                )
            # train_step returns the smoothed loss before its update
            expected_loss = smoothed_loss(log_probs, batch, 0.1)
            assert model.train_step(batch) == pytest.approx(expected_loss, abs=LOG_PROB_ATOL)

    @uses_step
    def test_padding_changes_nothing(self):
        for spec in family_specs(self.backend()):
            self._check_padding(spec)

    def _check_padding(self, spec):
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
        mask = batch.tgt_mask.astype(bool)
        np.testing.assert_allclose(
            np.asarray(model.log_probs(wide))[:, : mask.shape[1]][mask],
            np.asarray(model.log_probs(batch))[mask],
            atol=LOG_PROB_ATOL,
        )
        if "train" not in self.backend().capabilities:
            return
        g1, g2 = model.gradients(batch), model.gradients(wide)
        for name in g1:
            np.testing.assert_allclose(g1[name], g2[name], atol=1e-6, err_msg=name)

    @requires("train")
    def test_train_step_reduces_loss_and_returns_it(self):
        for spec in family_specs(self.backend()):
            self._check_train_step(spec)

    def _check_train_step(self, spec):
        model = self.build(spec)
        batch = mixed_batch(spec)
        before = model.loss(batch)
        first = model.train_step(batch)
        assert first == pytest.approx(before, rel=1e-4)
        for _ in range(30):
            model.train_step(batch)
        assert model.loss(batch) < before

    @requires("train", "freeze")
    def test_frozen_weights_stay_fixed(self):
        # OptimizerSpec.frozen: bit-identical after training, moments untouched, and left out
        # of the clipping norm (clip_norm 0.1 clips every update here: a norm that counted the
        # frozen gradients would move the other weights off the reference's)
        for spec in map(_with_table, family_specs(self.backend())):
            frozen = _frozen_names(spec)
            adam = OptimizerSpec(epsilon=1e-3, clip_norm=0.1, frozen=frozen)
            weights = perturbed_weights(spec, 15)
            model, ref = self.build(spec, optimizer=adam), self.reference(spec, adam)
            model.set_weights(weights)
            ref.set_weights(weights)
            for seed in (7, 8, 7):
                batch = mixed_batch(spec, seed=seed)
                assert model.train_step(batch) == pytest.approx(
                    ref.train_step(batch), abs=LOG_PROB_ATOL
                )
            got, expected = model.get_weights(), ref.get_weights()
            for name in frozen:
                np.testing.assert_array_equal(got[name], weights[name], err_msg=name)
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0, err_msg=name)
            trained = [n for n in got if n not in frozen]
            assert any(not np.array_equal(got[n], weights[n]) for n in trained)
            if "resume" in self.backend().capabilities:
                state = model.optimizer_state()
                for name in frozen:
                    assert not state[f"m/{name}"].any() and not state[f"v/{name}"].any(), name

    @requires("train", "ema")
    def test_ema_follows_the_reference(self):
        # OptimizerSpec.ema_decay: after each update the average of seq2seq_kit.ema over this
        # backend's own weights, equal to the reference's on the same updates; frozen
        # weights (with "freeze") are their own average, bit for bit (averaged, not copied,
        # a fixed weight comes out a rounding off in about a fifth of its elements at 0.9;
        # at 0.5 it would come out exact)
        freezes, decay = "freeze" in self.backend().capabilities, 0.9
        for spec in family_specs(self.backend()):
            spec = _with_table(spec) if freezes else spec
            frozen = _frozen_names(spec) if freezes else ()
            adam = OptimizerSpec(epsilon=1e-3, frozen=frozen, ema_decay=decay)
            weights = perturbed_weights(spec, 16)
            model, ref = self.build(spec, optimizer=adam), self.reference(spec, adam)
            model.set_weights(weights)
            ref.set_weights(weights)
            _assert_same(model.ema_weights(), weights, exact=True)  # before any update
            expected = {name: np.empty_like(w) for name, w in weights.items()}
            for step, seed in enumerate((7, 8, 7), start=1):
                batch = mixed_batch(spec, seed=seed)
                model.train_step(batch)
                ref.train_step(batch)
                for name, value in model.get_weights().items():
                    ema_update(expected[name], value, decay, first=step == 1)
                _assert_same(model.ema_weights(), expected, atol=1e-6)
            got = model.ema_weights()
            _assert_same(got, ref.ema_weights(), atol=1e-5)
            raw = model.get_weights()
            for name in frozen:
                np.testing.assert_array_equal(got[name], raw[name], err_msg=name)
            assert any(not np.array_equal(got[n], raw[n]) for n in raw if n not in frozen)

    @requires("train", "ema", "resume")
    def test_ema_is_saved_and_restored_with_the_optimizer_state(self):
        spec = family_specs(self.backend())[0]
        adam = OptimizerSpec(ema_decay=0.9)
        batch, other = mixed_batch(spec), mixed_batch(spec, seed=3)
        straight, first = self.build(spec, optimizer=adam), self.build(spec, optimizer=adam)
        for b in (batch, other):
            straight.train_step(b)
            first.train_step(b)
        state = first.optimizer_state()
        saved = {n: state[f"ema/{n}"] for n in weight_shapes(spec)}
        _assert_same(saved, first.ema_weights(), exact=True)
        resumed = self.build(spec, seed=5, optimizer=adam)  # another start: all is restored
        resumed.set_weights(first.get_weights())
        resumed.set_optimizer_state(state)
        _assert_same(resumed.ema_weights(), first.ema_weights(), exact=True)
        straight.train_step(batch)
        resumed.train_step(batch)
        _assert_same(resumed.ema_weights(), straight.ema_weights(), atol=1e-7)
        del state["ema/decoder.output.bias"]
        with pytest.raises(ValueError, match="ema/decoder.output.bias"):
            resumed.set_optimizer_state(state)
        # without a decay there is no average to keep: it is the weights
        plain = self.build(spec)
        plain.train_step(batch)
        _assert_same(plain.ema_weights(), plain.get_weights(), exact=True)
        assert not any(key.startswith("ema/") for key in plain.optimizer_state())


def _assert_same(
    got: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    atol: float = 0.0,
    exact: bool = False,
) -> None:
    """The same canonical names, and values within ``atol`` (bit-identical if ``exact``)."""
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert np.asarray(got[name]).dtype == np.float32, name
        if exact:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], value, atol=atol, rtol=0, err_msg=name)
