"""Sampling, target prefixes and output controls in the core: their numerics, what every
search makes of them on scripted models, and how ``plan``, ``encode_prefixes``, the
``[decode]`` rules and ``Translator.hypotheses`` check them. (The properties every backend
must have run in the conformance suite, ``seq2seq_kit.testing.search_options``.)"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import ScriptedModel

from seq2seq_kit.config import DecodeConfig
from seq2seq_kit.decoding import (
    SEARCH_OPTION_CAPABILITIES,
    OutputControls,
    Sampling,
    beam_search,
    encode_prefixes,
    greedy,
    plan,
    sample,
)
from seq2seq_kit.errors import CapabilityError, ConfigError, OptionError, PrefixError
from seq2seq_kit.logits_processing import StepProcessor, block_repeated_ngrams
from seq2seq_kit.sampling import draw, sampling_weights
from seq2seq_kit.testing.search_options import chi_square_sf
from seq2seq_kit.vocab import EOS, Vocabulary, pad

VOCAB = Vocabulary(("a", "b", "c"))  # ids 4, 5, 6
A, B, C = 4, 5, 6
STEPPING = frozenset({"beam"})  # a backend that steps the decoder


def src(*rows):
    ids = [list(r) for r in rows]
    return pad(ids), np.array([len(r) for r in ids], dtype=np.int32)


# ---------------------------------------------------------------- sampling's numerics


def test_temperature_top_k_and_top_p_shape_the_distribution():
    probs = np.array([0.0, 0.5, 0.3, 0.15, 0.05])
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)[None].astype(np.float32)

    def normalised(**options):
        weights = sampling_weights(log_probs, Sampling(**options))[0]
        return weights / weights.sum()

    np.testing.assert_allclose(normalised(), probs, rtol=1e-6)
    tempered = probs**2 / (probs**2).sum()
    np.testing.assert_allclose(normalised(temperature=0.5), tempered, rtol=1e-5)
    top2 = np.where(probs >= 0.3, probs, 0) / 0.8
    np.testing.assert_allclose(normalised(top_k=2), top2, rtol=1e-6)
    # the nucleus of 0.6: 0.5 alone falls short, 0.5 + 0.3 reaches it
    np.testing.assert_allclose(normalised(top_p=0.6), top2, rtol=1e-6)
    np.testing.assert_allclose(normalised(top_p=0.5), [0, 1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(normalised(top_k=4, top_p=1.0), probs, rtol=1e-6)
    # top-p acts on the tempered distribution: at temperature 2 the top two hold < 0.8
    flat = np.sqrt(probs) / np.sqrt(probs).sum()
    assert flat[1] + flat[2] < 0.8
    assert np.count_nonzero(normalised(temperature=2.0, top_p=0.8)) == 3


def test_top_k_keeps_ties_at_the_kth_value():
    log_probs = np.log(np.array([[0.4, 0.2, 0.2, 0.2]], np.float32))
    assert np.count_nonzero(sampling_weights(log_probs, Sampling(top_k=2))) == 4


def test_a_temperature_near_zero_keeps_only_the_best_token():
    log_probs = np.log(np.array([[0.1, 0.45, 0.44, 0.01]], np.float32))
    weights = sampling_weights(log_probs, Sampling(temperature=1e-6))[0]
    assert np.isfinite(weights).all() and np.flatnonzero(weights).tolist() == [1]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 10.0)), min_size=1, max_size=8).filter(sum),
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_draw_inverts_the_cumulative_distribution(weights, u):
    weights = np.array([weights])
    token = int(draw(weights, np.array([u]))[0])
    cdf = np.cumsum(weights[0])
    assert weights[0, token] > 0  # never a token of weight 0
    assert token == int(np.searchsorted(cdf, u * cdf[-1], side="right"))


def test_draw_over_many_blocks_inverts_the_cumulative_distribution():
    rng = np.random.default_rng(0)
    for vocab_size in (513, 1000, 8000):
        weights = rng.random((50, vocab_size)) * (rng.random((50, vocab_size)) < 0.1)
        weights[:, 3] += 1e-3
        weights = weights.astype(np.float32)
        uniforms = rng.random(50)
        tokens = draw(weights, uniforms)
        cdf = np.cumsum(weights, axis=1, dtype=np.float64)
        expected = [
            np.searchsorted(c, u * c[-1], side="right") for c, u in zip(cdf, uniforms, strict=True)
        ]
        assert (weights[np.arange(50), tokens] > 0).all()
        # float32 block sums could move a point within rounding of a boundary across it:
        # no random point falls that close
        assert tokens.tolist() == expected


@pytest.mark.parametrize("vocab_size", [4, 2000])
def test_draw_at_the_top_of_the_unit_interval_takes_the_last_possible_token(vocab_size):
    weights = np.zeros((1, vocab_size))
    weights[0, 1] = 1.5
    assert draw(weights, np.array([np.nextafter(1.0, 0.0)]))[0] == 1


def test_chi_square_tail_matches_known_values():
    # tables: the 0.05 critical values of df 1, 2, 5 and 10; df 2's tail is exp(-x / 2)
    for statistic, df in ((3.841, 1), (5.991, 2), (11.070, 5), (18.307, 10)):
        assert chi_square_sf(statistic, df) == pytest.approx(0.05, abs=2e-4)
    assert chi_square_sf(3.0, 2) == pytest.approx(np.exp(-1.5))


# ---------------------------------------------------------------- the step processing


def _naive_blocked(history, n):
    """The tokens that would repeat an n-gram of ``history``, written out plainly."""
    seen = {tuple(history[i : i + n - 1]): set() for i in range(len(history))}
    for i in range(len(history) - n + 1):
        seen[tuple(history[i : i + n - 1])].add(history[i + n - 1])
    return seen.get(tuple(history[len(history) - n + 1 :]) if n > 1 else (), set())


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(4, 7), min_size=6, max_size=6), min_size=1, max_size=4),
    st.integers(1, 4),
    st.integers(0, 6),
)
def test_ngram_blocking_blocks_exactly_the_repeating_tokens(histories, n, t):
    history = np.array([h[:t] for h in histories], dtype=np.int32).reshape(len(histories), t)
    log_probs = np.zeros((len(histories), 8), np.float32)
    block_repeated_ngrams(log_probs, history, n)
    for row, h in enumerate(history.tolist()):
        blocked = set(np.flatnonzero(np.isinf(log_probs[row])).tolist())
        assert blocked == (_naive_blocked(h, n) if t >= n else set())


def test_step_processing_masks_without_renormalising_and_forces_prefixes():
    log_probs = np.log(np.full((2, 7), 1 / 7, np.float32))
    process = StepProcessor(
        VOCAB, OutputControls(min_length=2, banned_ids=(B,)), prefixes=[(C, A), ()]
    )
    out = process(log_probs, 0, None, np.array([0, 1]))
    # row 0 is forced to C at its model log-probability; row 1 keeps A and C, not EOS
    assert np.flatnonzero(np.isfinite(out[0])).tolist() == [C]
    assert np.flatnonzero(np.isfinite(out[1])).tolist() == [A, C]
    np.testing.assert_array_equal(out[np.isfinite(out)], log_probs[np.isfinite(out)])
    after = process(log_probs, 2, None, np.array([0, 1]))  # past the prefix and min_length
    assert np.flatnonzero(np.isfinite(after[0])).tolist() == [EOS, A, C]


def test_min_length_yields_when_nothing_else_may_be_output():
    # one data token left (b, c banned), blocked once used: EOS ends the output early
    model = ScriptedModel(7)
    s, n = src([4])
    controls = OutputControls(min_length=3, no_repeat_ngram_size=1, banned_ids=(B, C))
    assert greedy(model, s, n, VOCAB, 5, controls=controls)[0].ids == (A,)
    for h in beam_search(model, s, n, VOCAB, 5, beam=3, n_best=3, controls=controls)[0]:
        assert h.ids == (A,) and not h.truncated


# ---------------------------------------------------------------- the searches


def test_unused_options_change_nothing():
    model = ScriptedModel(7, eos_bonus=1.0)
    s, n = src([4, 5], [6], [5, 5, 5])
    assert greedy(model, s, n, VOCAB, 6, controls=OutputControls(), prefixes=[(), (), ()]) == (
        greedy(model, s, n, VOCAB, 6)
    )
    assert beam_search(model, s, n, VOCAB, 6, 3, 2, 0.5, prefixes=None) == beam_search(
        model, s, n, VOCAB, 6, 3, 2, 0.5
    )


def test_a_sample_depends_on_its_input_and_seed_not_its_batch():
    model = ScriptedModel(7, eos_bonus=0.5)
    sampling = Sampling(num_samples=3, seed=9, temperature=1.5)
    s, n = src([4], [5, 6], [4], [6, 6, 5])
    together = sample(model, s, n, VOCAB, 8, sampling, prefixes=[(), (A,), (), ()])
    rows, prefixes = [[4], [5, 6], [4], [6, 6, 5]], [(), (A,), (), ()]
    for i, (row, prefix) in enumerate(zip(rows, prefixes, strict=True)):
        s1, n1 = src(row)
        assert sample(model, s1, n1, VOCAB, 8, sampling, prefixes=[prefix])[0] == together[i]
    assert together[0] == together[2]  # the same input, the same samples
    assert len({h.ids for h in together[3]}) > 1  # the samples of an input differ
    other = sample(model, s, n, VOCAB, 8, Sampling(num_samples=3, seed=10, temperature=1.5))
    assert other != together


def test_without_a_seed_each_call_draws_afresh():
    model = ScriptedModel(7, eos_bonus=0.5)
    s, n = src([4, 5])
    draws = {
        tuple(h.ids for h in sample(model, s, n, VOCAB, 8, Sampling(num_samples=4))[0])
        for _ in range(3)
    }
    assert len(draws) > 1


def test_samples_are_ranked_as_an_n_best_list():
    model = ScriptedModel(7, eos_bonus=0.5)
    s, n = src([5])
    for alpha in (0.0, 1.0):
        hyps = sample(model, s, n, VOCAB, 8, Sampling(num_samples=8, seed=1), alpha=alpha)[0]
        ranks = [h.score / ((5 + len(h.ids) + (not h.truncated)) / 6) ** alpha for h in hyps]
        assert ranks == sorted(ranks, reverse=True)


def test_sampled_scores_are_the_models_log_probabilities():
    model = ScriptedModel(7, eos_bonus=0.5)
    s, n = src([6, 4])
    sampling = Sampling(num_samples=5, seed=3, temperature=0.5, top_k=2)
    for h in sample(model, s, n, VOCAB, 6, sampling)[0]:
        tokens = h.ids if h.truncated else (*h.ids, EOS)
        expected = sum(
            model.next_log_probs((6, 4), tokens[:i])[tok] for i, tok in enumerate(tokens)
        )
        assert h.score == pytest.approx(expected, abs=1e-4)


def test_a_wide_beam_with_a_prefix_is_exact_search_among_its_continuations():
    model = ScriptedModel(7, eos_bonus=0.5)
    s, n = src([4, 5])
    prefix = (B, A)
    best = -np.inf
    for length in range(3):  # continuations of up to 2 tokens after the prefix (cap 4)
        for tail in itertools.product((A, B, C), repeat=length):
            tokens = (*prefix, *tail, EOS)
            total = sum(
                model.next_log_probs((4, 5), tokens[:i])[tok] for i, tok in enumerate(tokens)
            )
            best = max(best, total)
    hyps = beam_search(model, s, n, VOCAB, 4, beam=60, prefixes=[prefix])[0]
    assert all(h.ids[:2] == prefix for h in hyps)
    assert [h for h in hyps if not h.truncated][0].score == pytest.approx(best, abs=1e-5)


def test_a_prefix_as_long_as_the_cap_ends_or_truncates_there():
    model = ScriptedModel(7)
    s, n = src([4])
    assert greedy(model, s, n, VOCAB, 3, prefixes=[(A, B, C)])[0].ids == (A, B, C)
    hyps = beam_search(model, s, n, VOCAB, 3, beam=3, prefixes=[(A, B, C)])[0]
    assert [h.ids for h in hyps] == [(A, B, C)]


# ---------------------------------------------------------------- checks of the options


def _plan(capabilities=STEPPING, max_length=8, **options):
    return plan(DecodeConfig(**options), max_length, capabilities, "x", VOCAB)


def test_plan_carries_the_options():
    search = _plan(sampling=True, top_p=0.5, num_samples=3, seed=4, banned_tokens=["c", "a"])
    assert search.sampling == Sampling(top_p=0.5, num_samples=3, seed=4)
    assert search.controls.banned_ids == (A, C) and search.outputs_per_input == 3
    assert _plan().sampling is None and not _plan().controls.active


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"sampling": True}, "sampling"),
        ({"min_length": 2}, "min_length"),
        ({"no_repeat_ngram_size": 3}, "no_repeat_ngram_size"),
        ({"banned_tokens": ["a"]}, "banned_tokens"),
    ],
)
def test_an_engine_is_refused_an_option_whose_capability_it_lacks(options, option):
    engine = {"search", "beam"}
    with pytest.raises(CapabilityError) as exc:
        _plan(engine, **options)
    capability = SEARCH_OPTION_CAPABILITIES[option]
    assert exc.value.option == option and f"{capability!r} capability" in str(exc.value)
    assert _plan(engine | {capability}, **options).engine


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"min_length": 9}, "min_length", ["above the length cap of 8"]),
        ({"banned_tokens": ["b", "</s>"]}, "banned_tokens[1]", ["special", "min_length"]),
        ({"banned_tokens": ["z"]}, "banned_tokens[0]", ["'z'", "not a token"]),
        ({"banned_tokens": ["a", "b", "c"]}, "banned_tokens", ["every token"]),
    ],
)
def test_options_that_do_not_fit_the_model_are_refused_naming_them(options, option, words):
    with pytest.raises(OptionError) as exc:
        _plan(**options)
    assert exc.value.option == option
    for word in words:
        assert word in str(exc.value)


def test_banned_tokens_need_the_target_vocabulary():
    with pytest.raises(ValueError, match="vocab"):
        plan(DecodeConfig(banned_tokens=["a"]), 8, STEPPING, "x")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"temperature": 0.5}, ["decode.temperature", "sampling"]),
        ({"seed": 3}, ["decode.seed", "sampling"]),
        ({"num_samples": 2}, ["decode.num_samples"]),
        ({"sampling": True, "beam": 2}, ["decode.beam = 2", "set beam to 1"]),
        ({"sampling": True, "n_best": 3}, ["decode.n_best = 3"]),
    ],
)
def test_the_decode_table_refuses_sampling_keys_out_of_place(options, words):
    with pytest.raises(ValueError) as exc:
        DecodeConfig(**options)
    for word in words:
        assert word in str(exc.value)


@pytest.mark.parametrize(
    ("prefixes", "rows", "line", "words"),
    [
        (["a"], [[4], [5]], None, ["1 prefixes for 2 inputs"]),
        (["", "az"], [[4], [5]], 2, ["character 2: 'z'", "target vocabulary"]),
        (["cb"], [[4]], 1, ["character 2: 'b'", "banned"]),
        (["acacac"], [[4]], 1, ["6 tokens", "length cap of 5"]),
        (["a"], [None], 1, ["blank"]),
    ],
)
def test_prefixes_that_cannot_be_forced_are_refused_naming_the_line(prefixes, rows, line, words):
    search = _plan(max_length=5, banned_tokens=["b"])
    with pytest.raises(PrefixError) as exc:
        encode_prefixes(prefixes, rows, VOCAB, search)
    assert exc.value.line == line
    for word in words:
        assert word in str(exc.value)


def test_prefixes_encode_alone_and_none_are_none():
    search = _plan()
    assert encode_prefixes(["ab", "", ""], [[4], [5], None], VOCAB, search) == [
        (A, B),
        (),
        (),
    ]
    assert encode_prefixes(["", ""], [[4], [5]], VOCAB, search) is None
    assert encode_prefixes(None, [[4]], VOCAB, search) is None
    engine = _plan({"search"})
    with pytest.raises(PrefixError, match="'prefix' capability"):
        encode_prefixes(["", "a"], [[4], [5]], VOCAB, engine)


# ---------------------------------------------------------------- the Python API


@pytest.fixture(scope="module")
def translator():
    from seq2seq_kit.api import Translator
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec

    vocab = Vocabulary(tuple("abcdefgh"))
    spec = ModelSpec(len(vocab), len(vocab), hidden_size=8)
    model = get_backend("numpy").create(spec, seed=3)
    return Translator(model, vocab, vocab, backend="numpy", max_length=6)


def test_hypotheses_take_the_options_and_prefixes(translator):
    texts = ["abc", "h", ""]
    free = translator.hypotheses(texts)
    forced = translator.hypotheses(texts, prefix=["gg", "", ""], min_length=3)
    assert forced[0][0].text.startswith("gg") and len(forced[0][0].ids) >= 3
    assert forced[2] == free[2]  # a blank text gives its empty hypothesis
    drawn = translator.hypotheses(texts, sampling=True, num_samples=3, seed=1, top_k=3)
    assert [len(h) for h in drawn] == [3, 3, 1]
    assert drawn == translator.hypotheses(texts, sampling=True, num_samples=3, seed=1, top_k=3)
    banned = translator.hypotheses(texts, banned_tokens=["a", "b"], no_repeat_ngram_size=1)
    for hyps in banned[:2]:
        assert not {4, 5} & set(hyps[0].ids)
        assert len(set(hyps[0].ids)) == len(hyps[0].ids)


def test_hypotheses_refuse_bad_prefixes_and_options(translator):
    with pytest.raises(TypeError, match="not one string"):
        translator.hypotheses(["abc"], prefix="a")
    with pytest.raises(TypeError, match="prefix"):
        translator.hypotheses(["abc"], prefix=[3])
    with pytest.raises(PrefixError, match="2 prefixes for 1 texts"):
        translator.hypotheses(["abc"], prefix=["a", "b"])
    with pytest.raises(OptionError) as exc:
        translator.hypotheses(["abc"], top_p=0.5)
    assert exc.value.option == "top_p"
    with pytest.raises(OptionError) as exc:
        translator.hypotheses(["abc"], banned_tokens=["a", ""])
    assert exc.value.option == "banned_tokens[1]"
    with pytest.raises(ConfigError, match="temperature"):
        translator.hypotheses(["abc"], sampling=True, temperature=0.0)


def test_sampling_false_overrides_a_model_saved_to_sample(translator):
    """A model saved with ``[decode] sampling = true`` and a temperature searches when a
    call says ``sampling=False``: the saved sampling keys go with it (they would otherwise
    be refused as sampling keys without sampling)."""
    import copy

    from seq2seq_kit.api import Translator

    sampler = Translator(
        translator.model,
        translator.source_vocab,
        translator.target_vocab,
        backend="numpy",
        max_length=6,
        meta={"config": {"decode": {"sampling": True, "temperature": 1.5, "num_samples": 2}}},
    )
    saved = copy.deepcopy(sampler.meta)
    assert sampler.decode_config().sampling and sampler.decode_config().num_samples == 2
    options = sampler.decode_config(sampling=False)
    assert (options.sampling, options.temperature, options.num_samples) == (False, 1.0, 1)
    assert sampler.hypotheses(["abc", "h"], sampling=False) == translator.hypotheses(["abc", "h"])
    assert sampler.hypotheses(["abc"], sampling=False, beam=3) == translator.hypotheses(
        ["abc"], beam=3
    )
    # a sampling key given beside sampling=False is still the caller's mistake
    with pytest.raises(OptionError, match="temperature"):
        sampler.decode_config(sampling=False, temperature=0.5)
    assert sampler.meta == saved
