"""Beam search's numerics (seq2seq_kit.beam): the selection of the best extensions and
the stopping rules, each against a plain reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq_kit.beam import _best_extensions

EOS = 2


def _reference_extensions(scores: np.ndarray, steps: np.ndarray, k: int):
    """Every sum sorted: best first, the lower flat index first among equal sums."""
    n, width, vocab_size = steps.shape
    flat = (scores[:, :, None] + steps).reshape(n, width * vocab_size)
    order = np.lexsort((np.broadcast_to(np.arange(flat.shape[1]), flat.shape), -flat), axis=1)
    top = order[:, : min(k, flat.shape[1])]
    return np.take_along_axis(flat, top, axis=1), top


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),  # sentences
    st.integers(1, 5),  # beams
    st.integers(4, 300),  # vocabulary (fewer than k sums: 1 beam of 4 tokens)
    st.integers(1, 12),  # k
    st.booleans(),  # a few distinct values only: many ties
    st.integers(0, 2**32 - 1),
)
def test_best_extensions_are_the_best_sums_with_ties_to_the_lower_index(
    n, width, vocab_size, k, coarse, seed
):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, width, vocab_size)).astype(np.float32)
    if coarse:  # integer log-probabilities tie often, at the boundary of the k best too
        steps = -np.round(np.abs(steps) * 2).astype(np.float32)
    steps[:, :, [0, 1, 3]] = -np.inf  # masked specials
    scores = -np.round(np.abs(rng.normal(size=(n, width))) * 3)
    scores[rng.random((n, width)) < 0.2] = -np.inf  # empty beam slots
    got = _best_extensions(scores, steps, EOS, k)
    assert got.scores.shape == (n, k)
    # fewer sums than k (a tiny vocabulary): the rest is no extension
    assert not got.valid[:, width * vocab_size :].any()
    got = type(got)(*(a[:, : width * vocab_size] for a in got))
    want_scores, want_index = _reference_extensions(scores, steps, k)
    np.testing.assert_array_equal(got.scores, want_scores)
    # among -inf sums (no hypothesis) the order is immaterial; finite ones must match
    finite = np.isfinite(want_scores)
    flat = got.beam * vocab_size + got.token
    np.testing.assert_array_equal(flat[finite], want_index[finite])
    np.testing.assert_array_equal(got.valid, finite)
    np.testing.assert_array_equal(got.is_eos, finite & (got.token == EOS))
