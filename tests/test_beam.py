"""Beam search's numerics (seq2seq_kit.beam): the selection of the best extensions and
the stopping rules, each against a plain reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import ScriptedModel

from seq2seq_kit.beam import _best_extensions
from seq2seq_kit.decoding import beam_search, greedy
from seq2seq_kit.vocab import EOS, Vocabulary, pad

VOCAB = Vocabulary(("a", "b", "c"))  # ids 4, 5, 6
A, B, C = 4, 5, 6


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


# ---------------------------------------------------------------------- stopping rules


def _src(*rows):
    return pad([list(r) for r in rows]), np.array([len(r) for r in rows], dtype=np.int32)


def _likely_path_with_early_eos(path_length: int, eos_off_path: bool = True) -> ScriptedModel:
    """The likely output is ``a`` * path_length; on that path EOS has probability 0.06 at
    every step (second only to ``a``: among any beam's best candidates), off it every
    token and EOS are equally likely (without EOS: no other hypothesis ever finishes)."""

    def next_log_probs(source, prefix):
        if prefix == (A,) * path_length:
            p = {EOS: 0.97, A: 0.01, B: 0.01, C: 0.01}
        elif prefix == (A,) * len(prefix):
            p = {A: 0.9, EOS: 0.06, B: 0.02, C: 0.02}
        elif eos_off_path:
            p = {A: 0.25, B: 0.25, C: 0.25, EOS: 0.25}
        else:
            p = {A: 1 / 3, B: 1 / 3, C: 1 / 3}
        out = np.full(7, -np.inf, dtype=np.float32)
        for token, prob in p.items():
            out[token] = np.log(prob)
        return out

    model = ScriptedModel(7)
    model.next_log_probs = next_log_probs
    return model


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(4, 6), min_size=1, max_size=4), min_size=1, max_size=4),
    st.integers(1, 5),  # beam
    st.integers(1, 3),  # n_best
    st.sampled_from([0.0, 0.6, 2.0]),
    st.floats(0.0, 3.0),  # EOS bonus: short and long outputs
    st.integers(1, 6),  # max_length
)
def test_never_is_the_search_that_runs_to_max_length(
    sources, beam, n_best, alpha, eos_bonus, max_length
):
    # a patience no sentence reaches within max_length steps (at most beam hypotheses
    # finish per step) stops nothing early: every sentence runs to max_length or until
    # no hypothesis lives; "never" stops early only where that changes no output
    model = ScriptedModel(7, eos_bonus=eos_bonus)
    s, n = _src(*sources)
    options = (VOCAB, max_length, beam, n_best, alpha)
    run_on = beam_search(model, s, n, *options, early_stopping=100.0)
    assert beam_search(model, s, n, *options, early_stopping="never") == run_on
    if alpha == 0:  # without a penalty the bound at the current length is the exact one
        assert beam_search(model, s, n, *options, early_stopping=False) == run_on


def test_with_a_length_penalty_false_stops_where_never_runs_on_to_a_longer_output():
    # "a" finishes at the second step (raw log 0.7 + log 0.9 = -0.46, rank -0.46 / 7/6 =
    # -0.39); "b" goes on at nearly no cost (raw about log 0.25 = -1.39 at any length).
    # False: were "bb" to end at the next step its rank would be -1.39 / 8/6 = -1.04, so
    # it stops; "never": "b" * 30 may reach -1.39 / 36/6 = -0.23, above "a": it runs on,
    # and finds that the cut "b" * 30 ranks first (-1.42 / 35/6 = -0.24).
    table = {(): {A: 0.7, B: 0.25, EOS: 0.05}, (A,): {EOS: 0.9, A: 0.05, B: 0.05}}
    for k in range(1, 31):
        table[(B,) * k] = {B: 0.999, EOS: 0.001}
    found, steps = {}, {}
    for rule in (False, "never"):
        model = ScriptedModel(7, {k: _probs(v) for k, v in table.items()})
        s, n = _src([4])
        found[rule] = beam_search(model, s, n, VOCAB, 30, beam=2, alpha=1.0, early_stopping=rule)
        steps[rule] = model.calls
    assert found[False][0][0].ids == (A,) and steps[False] == 2
    best = found["never"][0][0]
    assert best.ids == (B,) * 30 and best.truncated and steps["never"] == 31


def _probs(p: dict[int, float]) -> np.ndarray:
    out = np.zeros(7)
    for token, prob in p.items():
        out[token] = prob
    return out


@pytest.mark.parametrize(("rule", "steps", "best"), [(True, 2, ()), (2.0, 4, ())])
def test_a_count_stops_at_beam_times_patience_finished_hypotheses(rule, steps, best):
    # beam 2: "" finishes at the first step and "a" at the second (EOS is second only to
    # `a` on the likely path), so True (Hugging Face's, fairseq's) stops after two steps
    # on the early, unlikely outputs; patience 2 waits for four: "", a, aa, aaa
    model = _likely_path_with_early_eos(6)
    s, n = _src([4])
    hyps = beam_search(model, s, n, VOCAB, 10, beam=2, early_stopping=rule)[0]
    assert model.calls == steps
    assert hyps[0].ids == best
    # the bound goes on to the likely output
    model = _likely_path_with_early_eos(6)
    assert beam_search(model, s, n, VOCAB, 10, beam=2)[0][0].ids == (A,) * 6


def test_patience_rounds_half_up_as_ctranslate2():
    # beam 5 x patience 0.5 = 2.5 finished hypotheses: 3 (std::round), not 2 (Python's
    # round half to even); on the likely path one finishes per step, none off it
    model = _likely_path_with_early_eos(8, eos_off_path=False)
    s, n = _src([4])
    beam_search(model, s, n, VOCAB, 10, beam=5, early_stopping=0.5)
    assert model.calls == 3


@pytest.mark.parametrize("rule", [False, True, "never", 0.3, 2.0])
def test_beam_one_is_greedy_by_every_rule(rule):
    for seed in range(10):
        model = ScriptedModel(7, eos_bonus=1.5)
        s, n = _src([4 + seed % 3], [5, 6, seed % 5 + 4])
        g = greedy(model, s, n, VOCAB, 6)
        b = beam_search(model, s, n, VOCAB, 6, beam=1, early_stopping=rule)
        assert [(h.ids, h.truncated) for h in g] == [(h[0].ids, h[0].truncated) for h in b]
        np.testing.assert_allclose([h.score for h in g], [h[0].score for h in b], atol=1e-5)


@pytest.mark.parametrize("rule", ["always", 0, -1.0, float("nan"), None])
def test_an_unknown_rule_is_refused_naming_it(rule):
    s, n = _src([4])
    with pytest.raises(ValueError, match="early_stopping"):
        beam_search(ScriptedModel(7), s, n, VOCAB, 3, beam=2, early_stopping=rule)
