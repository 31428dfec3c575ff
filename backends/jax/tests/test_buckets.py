"""JAX-specific checks: padding batches up to compile buckets changes no result, dropout
masks included."""

from __future__ import annotations

import numpy as np
import pytest

from seq2seq_kit.batching import Batch, make_batch
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec, TransformerSpec

RNN = ModelSpec(
    11,
    13,
    hidden_size=6,
    embedding_size=5,
    num_layers=2,
    cell="gru",
    bidirectional=True,
    attention="bahdanau",
    dropout=0.3,
)
TRANSFORMER = TransformerSpec(
    11, 13, d_model=8, num_heads=2, ff_size=12, dropout=0.3, attention_dropout=0.2
)
SPECS = pytest.mark.parametrize("spec", [RNN, TRANSFORMER], ids=["rnn", "transformer"])


def _batch() -> Batch:
    return make_batch([[4, 5, 6], [7], [8, 9]], [[4, 5], [6, 7, 8], [9]])


def _padded(batch: Batch, rows: int, columns: int) -> Batch:
    """``batch`` with ``columns`` trailing PAD positions on both sides and ``rows`` extra
    rows of empty sources and fully masked targets: enough to cross bucket boundaries."""

    def grow(a: np.ndarray) -> np.ndarray:
        out = np.zeros((a.shape[0] + rows, a.shape[1] + columns), dtype=a.dtype)
        out[: a.shape[0], : a.shape[1]] = a
        return out

    return Batch(
        src_ids=grow(batch.src_ids),
        src_lengths=np.concatenate([batch.src_lengths, np.zeros(rows, np.int32)]),
        tgt_in=grow(batch.tgt_in),
        tgt_out=grow(batch.tgt_out),
        tgt_lengths=np.concatenate([batch.tgt_lengths, np.zeros(rows, np.int32)]),
        tgt_mask=grow(batch.tgt_mask),
    )


def test_bucket_sizes():
    from seq2seq_kit_jax.padding import MIN_BUCKET, bucket

    assert [bucket(n) for n in (0, 1, MIN_BUCKET)] == [MIN_BUCKET] * 3
    assert bucket(MIN_BUCKET + 1) == 2 * MIN_BUCKET
    assert bucket(1000) == 1024


@SPECS
def test_padding_past_a_bucket_changes_nothing(spec):
    model = get_backend("jax").create(spec, seed=1)
    batch = _batch()
    wide = _padded(batch, rows=7, columns=9)
    assert model.loss(wide) == pytest.approx(model.loss(batch), abs=1e-6)
    g1, g2 = model.gradients(batch), model.gradients(wide)
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        model.log_probs(wide)[:3, : batch.tgt_in.shape[1]], model.log_probs(batch), atol=1e-6
    )


@SPECS
def test_dropout_masks_ignore_padding(spec):
    batch = _batch()
    wide = _padded(batch, rows=7, columns=9)
    runs = []
    for b in (batch, wide):
        model = get_backend("jax").create(spec, seed=3)
        runs.append(([model.train_step(b) for _ in range(2)], model.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], atol=1e-6)
    for name, value in runs[0][1].items():
        np.testing.assert_allclose(value, runs[1][1][name], atol=1e-6, err_msg=name)
