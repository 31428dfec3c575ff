import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import ScriptedModel

from seq2seq_kit.decoding import beam_search, greedy, length_penalty
from seq2seq_kit.vocab import EOS, PAD, Vocabulary, pad

VOCAB = Vocabulary(("a", "b", "c"))  # ids 4, 5, 6
A, B, C = 4, 5, 6


def probs(**kw):
    p = np.zeros(7)
    for name, value in kw.items():
        p[{"a": A, "b": B, "c": C, "eos": EOS}[name]] = value
    return p


def src(*rows):
    ids = [list(r) for r in rows]
    return pad(ids), np.array([len(r) for r in ids], dtype=np.int32)


def test_beam_finds_the_better_sequence_greedy_misses():
    table = {
        (): probs(a=0.6, b=0.4),
        (A,): probs(a=0.34, b=0.33, c=0.33),
        (B,): probs(eos=0.9, a=0.1),
        (B, EOS): probs(eos=1),
    }
    for k in [(A, x) for x in (A, B, C)]:
        table[k] = probs(eos=1.0)
    model = ScriptedModel(7, table)
    s, n = src([4])
    assert greedy(model, s, n, VOCAB, 5)[0].text == "aa"
    best = beam_search(model, s, n, VOCAB, 5, beam=2)[0][0]
    assert best.text == "b"
    assert best.score == pytest.approx(np.log(0.4 * 0.9), abs=1e-5)
    assert not best.truncated


def test_beam_one_equals_greedy_on_random_models():
    for seed in range(20):
        model = ScriptedModel(7, eos_bonus=1.5)
        s, n = src([4 + seed % 3], [5, 6, seed % 5 + 4])
        g = greedy(model, s, n, VOCAB, 6)
        b = beam_search(model, s, n, VOCAB, 6, beam=1)
        assert [h.ids for h in g] == [hyps[0].ids for hyps in b]
        assert [h.score for h in g] == pytest.approx([hyps[0].score for hyps in b], abs=1e-5)
        assert [h.truncated for h in g] == [hyps[0].truncated for hyps in b]


def test_wide_beam_is_exact_search():
    model = ScriptedModel(7, eos_bonus=0.5)
    s, n = src([4, 5])
    max_len = 3
    best = -np.inf
    # exhaustive: every sequence of up to max_len tokens from {a, b, c}, EOS-terminated
    for length in range(max_len + 1):
        for seq in itertools.product((A, B, C), repeat=length):
            total, prefix = 0.0, ()
            for tok in (*seq, EOS):
                total += model.next_log_probs((4, 5), prefix)[tok]
                prefix += (tok,)
            best = max(best, total)
    hyps = beam_search(model, s, n, VOCAB, max_len, beam=40)[0]
    complete = [h for h in hyps if not h.truncated]
    assert complete[0].score == pytest.approx(best, abs=1e-5)


def test_never_eos_is_truncated_without_specials():
    table = {}
    model = ScriptedModel(7, table)
    model.next_log_probs = lambda source, prefix: np.log(probs(a=0.5, b=0.2, eos=0.0) + 1e-30)
    s, n = src([4], [])
    for hyp in greedy(model, s, n, VOCAB, 4):
        assert hyp.truncated and hyp.text == "aaaa"
    for hyps in beam_search(model, s, n, VOCAB, 4, beam=3, n_best=3):
        assert all(h.truncated and len(h.ids) == 4 for h in hyps)
        assert all(set(h.ids) <= {A, B, C} for h in hyps)


def test_specials_masked_even_when_the_model_prefers_them():
    model = ScriptedModel(7)
    model.next_log_probs = lambda source, prefix: np.log(
        np.array([0.3, 0.3, 0.05, 0.3, 0.06, 0.0, 0.0]) + 1e-30
    )
    s, n = src([4])
    hyp = greedy(model, s, n, VOCAB, 3)[0]
    assert hyp.ids == (A, A, A) and hyp.text == "aaa"
    assert PAD not in beam_search(model, s, n, VOCAB, 3, beam=4)[0][0].ids


def test_n_best_larger_than_distinct_hypotheses():
    model = ScriptedModel(7, eos_bonus=3.0)
    s, n = src([4])
    hyps = beam_search(model, s, n, VOCAB, 1, beam=3, n_best=50)[0]
    # at most one token: "", a, b, c complete, plus a, b, c truncated
    assert 1 <= len(hyps) <= 7
    assert len({(h.ids, h.truncated) for h in hyps}) == len(hyps)
    normalized = [h.score for h in hyps]
    assert normalized == sorted(normalized, reverse=True)


def test_beam_larger_than_vocabulary():
    model = ScriptedModel(7, eos_bonus=1.0)
    s, n = src([4], [5, 6])
    out = beam_search(model, s, n, VOCAB, 4, beam=30, n_best=5)
    assert len(out) == 2 and all(len(h) == 5 for h in out)


def test_length_penalty_prefers_longer_outputs():
    assert length_penalty(5, 0.0) == 1.0
    assert length_penalty(5, 1.0) == pytest.approx(10 / 6)
    table = {(): probs(eos=0.5, a=0.5), (A,): probs(eos=0.1, a=0.9), (A, A): probs(eos=1)}
    model = ScriptedModel(7, table)
    s, n = src([4])
    plain = beam_search(model, s, n, VOCAB, 3, beam=3, alpha=0.0)[0][0]
    longer = beam_search(model, s, n, VOCAB, 3, beam=3, alpha=1.0)[0][0]
    assert plain.text == "" and len(longer.text) > 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(4, 6), max_size=5), min_size=1, max_size=6))
def test_batch_decoding_equals_one_by_one(sources):
    model = ScriptedModel(7, eos_bonus=1.0)
    s, n = src(*sources)
    batched = greedy(model, s, n, VOCAB, 5)
    beamed = beam_search(model, s, n, VOCAB, 5, beam=3, n_best=2)
    for i, row in enumerate(sources):
        s1, n1 = src(row)
        assert greedy(model, s1, n1, VOCAB, 5)[0] == batched[i]
        assert beam_search(model, s1, n1, VOCAB, 5, beam=3, n_best=2)[0] == beamed[i]


def _likely_path_with_early_eos(path_length: int) -> ScriptedModel:
    """Model whose likely output is ``a`` * path_length: on that path EOS has probability
    0.06 at every step (second only to ``a``, so within any beam's top candidates), off
    it every token and EOS are equally likely."""

    def next_log_probs(source, prefix):
        if prefix == (A,) * path_length:
            p = probs(eos=0.97, a=0.01, b=0.01, c=0.01)
        elif prefix == (A,) * len(prefix):
            p = probs(a=0.9, eos=0.06, b=0.02, c=0.02)
        else:
            p = probs(a=0.25, b=0.25, c=0.25, eos=0.25)
        with np.errstate(divide="ignore"):
            return np.log(p).astype(np.float32)

    model = ScriptedModel(7)
    model.next_log_probs = next_log_probs
    return model


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("beam", [2, 3, 4, 5])
def test_early_unlikely_eos_does_not_end_the_search(beam, alpha):
    # Stopping at `beam` finished hypotheses would end the search on the early
    # low-probability EOS candidates before the likely output reaches its EOS.
    model = _likely_path_with_early_eos(6)
    s, n = src([4])
    expected = np.log(0.9) * 6 + np.log(0.97)
    assert greedy(model, s, n, VOCAB, 10)[0].ids == (A,) * 6
    best = beam_search(model, s, n, VOCAB, 10, beam=beam, alpha=alpha)[0][0]
    assert best.ids == (A,) * 6 and not best.truncated
    assert best.score == pytest.approx(expected, abs=1e-5)


def test_negative_length_penalty_is_refused():
    s, n = src([4])
    with pytest.raises(ValueError, match="alpha"):
        beam_search(ScriptedModel(7), s, n, VOCAB, 3, beam=2, alpha=-0.5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(4, 6), min_size=1, max_size=4),
    st.floats(0.0, 3.0),
    st.integers(1, 3),
)
def test_exhaustive_width_beam_never_below_greedy(source, eos_bonus, max_length):
    # A width of 4 ** max_length (every continuation: 3 tokens and EOS, at every step)
    # prunes nothing, so the search must find greedy's output or a better one. (A narrower
    # beam, even as wide as the vocabulary, may prune greedy's path.) Truncated outputs
    # too: at max_length both take the same last step (EOS when it is the best token).
    model = ScriptedModel(7, eos_bonus=eos_bonus)
    s, n = src(source)
    g = greedy(model, s, n, VOCAB, max_length)[0]
    best = beam_search(model, s, n, VOCAB, max_length, beam=4**max_length)[0][0]
    assert best.score >= g.score - 1e-5


@pytest.mark.parametrize("architecture", ["rnn", "transformer"])
def test_forced_attention_equals_greedy_attention(architecture):
    # a random model's greedy outputs, some ending in EOS and some truncated at max_length:
    # forcing each output back through the decoder gives the weights greedy saw
    from seq2seq_kit.decoding import forced_attention
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec, TransformerSpec

    vocab = Vocabulary(tuple("abcdefgh"))
    if architecture == "rnn":
        spec = ModelSpec(len(vocab), len(vocab), hidden_size=8, attention="general")
    else:
        spec = TransformerSpec(
            len(vocab), len(vocab), d_model=8, num_heads=2, ff_size=16, max_positions=16
        )
        if "transformer" not in get_backend("numpy").capabilities:
            pytest.skip("the numpy backend builds no Transformer")
    model = get_backend("numpy").create(spec, seed=4)  # a seed whose outputs mix both ends
    s, n = src([4, 5, 6], [7], [8, 9, 10, 11, 4])
    hyps = greedy(model, s, n, vocab, 6, attention=True)
    forced = forced_attention(model, s, n, hyps, vocab.bos_id)
    for hyp, weights in zip(hyps, forced, strict=True):
        rows = len(hyp.ids) + (0 if hyp.truncated else 1)
        assert weights.shape == (rows, s.shape[1]) and weights.dtype == np.float32
        np.testing.assert_allclose(weights, hyp.attention[:rows], atol=1e-6)
    lengths = n.tolist()
    for weights, length in zip(forced, lengths, strict=True):
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert not weights[:, length:].any()
    assert {h.truncated for h in hyps} == {True, False}
