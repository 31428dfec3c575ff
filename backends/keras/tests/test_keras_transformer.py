"""The Keras backend's Transformer decoder states and dropout masks. Its agreement with the
canonical maths (log-probabilities and gradients against the NumPy reference), incremental
decoding, accumulation and label smoothing are conformance-suite checks
(``tests/test_conformance.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from seq2seq_kit.batching import make_batch
from seq2seq_kit.plugins import registry
from seq2seq_kit.spec import OptimizerSpec, TransformerSpec

if "keras" not in registry().backends:
    pytest.skip("the keras backend is not installed", allow_module_level=True)

# Mixed source lengths including 0, targets of different lengths (so padded positions).
SOURCES = [[4, 5, 6], [], [6, 4, 7, 8], [5]]
TARGETS = [[4, 5], [6, 7, 4, 5], [], [7]]


def small_spec(**overrides) -> TransformerSpec:
    settings = dict(d_model=16, num_heads=4, ff_size=24, max_positions=12, dropout=0.0)
    return TransformerSpec(11, 11, **{**settings, **overrides})


def create(spec: TransformerSpec, seed: int = 3, **optimizer):
    return (
        registry().backends["keras"].create(spec, seed=seed, optimizer=OptimizerSpec(**optimizer))
    )


# ------------------------------------------------------------------ a literal reference


def perturbed(model, seed: int = 7) -> dict[str, np.ndarray]:
    """The model's weights with noise on every one (zero biases and unit scales would hide
    a misplaced bias or scale)."""
    rng = np.random.default_rng(seed)
    weights = {
        name: (value + rng.normal(0.0, 0.2, value.shape)).astype(np.float32)
        for name, value in model.get_weights().items()
    }
    model.set_weights(weights)
    return weights


# ------------------------------------------------------------------ tests


def test_step_and_reorder_leave_their_state_unchanged():
    model = create(small_spec())
    perturbed(model)
    batch = make_batch(SOURCES, TARGETS)
    state = model.encode(batch.src_ids, batch.src_lengths)
    _, state = model.step(batch.tgt_in[:, 0], state)
    first, after = model.step(batch.tgt_in[:, 1], state)
    index = np.array([3, 3, 0], dtype=np.int64)
    picked = model.reorder(state, index)
    again, _ = model.step(batch.tgt_in[:, 1], state)
    np.testing.assert_array_equal(first, again)
    from_picked, _ = model.step(batch.tgt_in[index, 1], picked)
    np.testing.assert_allclose(from_picked, first[index], atol=1e-6)
    np.testing.assert_array_equal(
        model.attention(model.reorder(after, index)), model.attention(after)[index]
    )


def test_dropout_masks_follow_seed_update_and_position():
    spec = small_spec(dropout=0.3, attention_dropout=0.2)
    batch = make_batch(SOURCES, TARGETS)
    one, two = create(spec, seed=5), create(spec, seed=5)
    assert one.train_step(batch) == two.train_step(batch)  # same seed, same masks
    clean = create(small_spec(), seed=5).loss(batch)
    first = create(spec, seed=5).train_step(batch)
    assert first != pytest.approx(clean, abs=1e-4)  # dropout is on in train_step
    assert create(spec, seed=5).loss(batch) == pytest.approx(clean, abs=1e-6)  # not in loss
    # The second batch of an update draws other masks than the first.
    twice = create(spec, seed=5).train_step([batch, batch])
    assert twice != pytest.approx(first, abs=1e-5)
