"""Lexically constrained beam search in the core: the automaton that tracks each
hypothesis's constraints, what the search makes of them on scripted models, how
``encode_constraints`` checks them, and the Python API and ``translate --constraints``. (The
properties every backend must have run in the conformance suite,
``seq2seq_kit.testing.search_options``.)"""

import itertools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import ScriptedModel

from seq2seq_kit.config import DecodeConfig
from seq2seq_kit.constrained_beam import Automaton
from seq2seq_kit.decoding import (
    OutputControls,
    beam_search,
    encode_constraints,
    plan,
)
from seq2seq_kit.errors import CapabilityError, ConstraintError, OptionError
from seq2seq_kit.searches import holds_phrases
from seq2seq_kit.vocab import EOS, Vocabulary, pad

VOCAB = Vocabulary(("a", "b", "c", "d"))  # ids 4..7
A, B, C, D = 4, 5, 6, 7
STEPPING = frozenset({"beam"})


def src(*rows):
    ids = [list(r) for r in rows]
    return pad(ids), np.array([len(r) for r in ids], dtype=np.int32)


phrase = st.lists(st.sampled_from((A, B, C)), min_size=1, max_size=3).map(tuple)


# ---------------------------------------------------------------- the automaton


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(phrase, max_size=4), min_size=1, max_size=3),
    st.lists(st.lists(st.sampled_from((A, B, C, D)), max_size=10), min_size=1, max_size=3),
)
def test_the_automaton_tracks_which_phrases_the_tokens_hold(constraints, sequences):
    # every hypothesis reads its tokens one at a time; after each, the phrases it holds are
    # those found in its tokens, and what it has begun is the longest end of its tokens
    # that begins a phrase it lacks
    automaton = Automaton.build(constraints, len(VOCAB))
    for sentence, phrases in enumerate(constraints):
        for tokens in sequences:
            node = automaton.roots[sentence : sentence + 1]
            held = ~automaton.present[sentence : sentence + 1].copy()
            for t in range(len(tokens)):
                node = automaton.advance(node, np.array([tokens[t]]))
                held = held | automaton.ends[node]
                seen = tokens[: t + 1]
                expected = [holds_phrases(seen, [p]) for p in phrases]
                assert held[0, : len(phrases)].tolist() == expected
                begun = automaton.begun(node, held)[0]
                longest = max(
                    (
                        n
                        for n in range(1, len(seen) + 1)
                        for p, done in zip(phrases, expected, strict=True)
                        if not done and tuple(seen[-n:]) == p[:n]
                    ),
                    default=0,
                )
                assert automaton.depth[begun] == longest
                bank = automaton.met_tokens(np.array([sentence]), np.array([begun]), held)[0]
                assert bank == sum(len(p) for p, d in zip(phrases, expected, strict=True) if d) + (
                    longest
                )


def test_next_tokens_go_on_with_the_phrase_begun_or_begin_one():
    automaton = Automaton.build([[(A, B, C), (B, D), (C,)]], len(VOCAB))
    root = automaton.roots[:1]
    held = np.zeros((1, 3), dtype=bool)
    node = automaton.advance(root, np.array([A]))
    rows, tokens = automaton.next_tokens(automaton.begun(node, held), held)
    assert sorted(tokens.tolist()) == [A, B, B, C] and set(rows.tolist()) == {0}
    held[0, 2] = True  # (C,) held: C no longer begins a phrase
    rows, tokens = automaton.next_tokens(automaton.begun(root, held), held)
    assert sorted(tokens.tolist()) == [A, B]


# ---------------------------------------------------------------- the search


def _met(hyps, phrases):
    return [holds_phrases(h.ids, phrases) for h in hyps]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(phrase, max_size=3), min_size=2, max_size=4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.6, 1.5]),
    st.sampled_from([False, True, "never", 1.5]),
    st.sampled_from([0.0, 1.0, 2.5]),
    st.integers(3, 9),
)
def test_unconstrained_sentences_get_the_plain_search_exactly(
    constraints, beam, n_best, alpha, rule, eos_bonus, max_length
):
    constraints[0] = []  # at least one sentence without constraints
    model = ScriptedModel(len(VOCAB), eos_bonus=eos_bonus)
    s, n = src(*[[4 + i, 5 + i % 3] for i in range(len(constraints))])
    options = {"beam": beam, "n_best": n_best, "alpha": alpha, "early_stopping": rule}
    plain = beam_search(model, s, n, VOCAB, max_length, **options)
    held = beam_search(model, s, n, VOCAB, max_length, constraints=constraints, **options)
    for phrases, free, got in zip(constraints, plain, held, strict=True):
        if not phrases:
            assert got == free  # ids, scores (exactly), truncation, constraints_met
        else:
            met = [h.constraints_met for h in got]
            assert met == _met(got, phrases) and met == sorted(met, reverse=True)
            assert len(got) <= n_best and len({h.ids for h in got}) == len(got)
            if sum(map(len, phrases)) <= max_length:
                assert got[0].constraints_met, (phrases, got)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(phrase, min_size=1, max_size=2).filter(lambda ps: sum(map(len, ps)) <= 3),
    st.sampled_from([0.0, 1.0]),
)
def test_a_beam_wider_than_every_hypothesis_finds_the_best_output_holding_the_phrases(
    phrases, alpha
):
    # 3 data tokens and a cap of 4: at most 27 x 4 candidates before the last step, so a
    # beam of 120 drops none and, stopping by the exact rule, is exhaustive search among
    # the outputs holding the phrases (those that end before the cap: at it, EOS ends only
    # where it is the model's best token, as in the plain search)
    model = ScriptedModel(len(VOCAB), eos_bonus=1.0)
    s, n = src([5, 6])
    cap = 4
    best = -np.inf
    for length in range(cap):
        for tokens in itertools.product((A, B, C), repeat=length):
            if not holds_phrases(tokens, phrases):
                continue
            full = (*tokens, EOS)
            total = sum(model.next_log_probs((5, 6), full[:i])[tok] for i, tok in enumerate(full))
            best = max(best, total / ((5 + len(full)) / 6) ** alpha)
    controls = OutputControls(banned_ids=(D,))
    hyps = beam_search(
        model, s, n, VOCAB, cap, beam=120, n_best=120, alpha=alpha, early_stopping="never",
        controls=controls, constraints=[phrases],
    )[0]  # fmt: skip
    ended = [h for h in hyps if not h.truncated and len(h.ids) < cap]
    rank = ended[0].score / ((5 + len(ended[0].ids) + 1) / 6) ** alpha
    assert rank == pytest.approx(best, abs=1e-5)


def test_scores_are_the_models_log_probabilities():
    model = ScriptedModel(len(VOCAB), eos_bonus=0.5)
    s, n = src([4, 6])
    for h in beam_search(model, s, n, VOCAB, 8, beam=3, n_best=3, constraints=[[(C, A)]])[0]:
        tokens = h.ids if h.truncated else (*h.ids, EOS)
        expected = sum(
            model.next_log_probs((4, 6), tokens[:i])[tok] for i, tok in enumerate(tokens)
        )
        assert h.score == pytest.approx(expected, abs=1e-4)
        assert h.constraints_met and holds_phrases(h.ids, [(C, A)])


def test_a_phrase_longer_than_the_cap_flags_every_output():
    model = ScriptedModel(len(VOCAB), eos_bonus=3.0)
    s, n = src([4], [5])
    found = beam_search(
        model, s, n, VOCAB, 3, beam=3, n_best=2, constraints=[[(A, B, C, A)], [(B,)]]
    )
    assert [h.constraints_met for h in found[0]] == [False, False]
    assert all(h.truncated and len(h.ids) == 3 for h in found[0])
    assert found[1][0].constraints_met and B in found[1][0].ids


def test_output_controls_that_rule_a_phrase_out_end_the_search_flagged():
    # no token twice rules out "a a": each output obeys the control and is flagged; when
    # every other token is blocked, EOS ends it (not truncated)
    model = ScriptedModel(len(VOCAB))
    s, n = src([4])
    controls = OutputControls(no_repeat_ngram_size=1)
    hyps = beam_search(model, s, n, VOCAB, 6, beam=2, n_best=2, controls=controls,
                       constraints=[[(A, A)]])[0]  # fmt: skip
    for h in hyps:
        assert not h.constraints_met and len(set(h.ids)) == len(h.ids)
        assert not h.truncated  # four data tokens, a cap of 6: every token is used first


def test_a_prefix_and_constraints_hold_together():
    model = ScriptedModel(len(VOCAB), eos_bonus=1.0)
    s, n = src([4], [6])
    found = beam_search(
        model, s, n, VOCAB, 8, beam=3, n_best=2, prefixes=[(B, A), ()],
        constraints=[[(A, C)], [(D, D)]],
    )  # fmt: skip
    for hyps, start, phrase_ in zip(found, [(B, A), ()], [(A, C), (D, D)], strict=True):
        for h in hyps:
            assert h.ids[: len(start)] == start
            assert h.constraints_met and holds_phrases(h.ids, [phrase_])


def test_the_prefix_can_hold_a_phrase():
    model = ScriptedModel(len(VOCAB), eos_bonus=2.0)
    s, n = src([4])
    alone = beam_search(model, s, n, VOCAB, 6, beam=2, prefixes=[(B, C)])[0]
    held = beam_search(model, s, n, VOCAB, 6, beam=2, prefixes=[(B, C)], constraints=[[(C,)]])
    assert held[0] == alone


# ---------------------------------------------------------------- checks of the constraints


def _plan(capabilities=STEPPING, max_length=8, **options):
    return plan(DecodeConfig(**options), max_length, capabilities, "x", VOCAB)


@pytest.mark.parametrize(
    ("constraints", "rows", "line", "number", "words"),
    [
        ([["a"]], [[4], [5]], None, None, ["1 lists for 2 inputs"]),
        ([[], ["ab", "az"]], [[4], [5]], 2, 2, ["'az'", "character 2: 'z'", "target vocab"]),
        ([["cb"]], [[4]], 1, 1, ["'cb'", "character 1: 'c'", "banned"]),
        ([["a", ""]], [[4]], 1, 2, ["'' has no target token"]),
        ([["a"]], [None], 1, None, ["blank"]),
    ],
)
def test_constraints_that_cannot_be_held_are_refused_naming_them(
    constraints, rows, line, number, words
):
    search = _plan(banned_tokens=["c"])
    with pytest.raises(ConstraintError) as exc:
        encode_constraints(constraints, rows, VOCAB, search)
    assert (exc.value.line, exc.value.number) == (line, number)
    for word in words:
        assert word in str(exc.value)


def test_constraints_encode_alone_and_none_are_none():
    search = _plan()
    assert encode_constraints([["ab", "d"], [], []], [[4], [5], None], VOCAB, search) == [
        ((A, B), (D,)),
        (),
        (),
    ]
    assert encode_constraints([[], []], [[4], [5]], VOCAB, search) is None
    assert encode_constraints(None, [[4]], VOCAB, search) is None


def test_sampling_and_an_engine_without_the_capability_refuse_constraints():
    with pytest.raises(OptionError) as exc:
        encode_constraints([["a"]], [[4]], VOCAB, _plan(sampling=True))
    assert exc.value.option == "sampling" and "decode.sampling" in str(exc.value)
    engine = _plan({"search", "beam"})
    with pytest.raises(CapabilityError) as exc:
        encode_constraints([[], ["a"]], [[4], [5]], VOCAB, engine)
    assert exc.value.option == "constraints" and "input line 2" in str(exc.value)
    assert encode_constraints([["a"]], [[4]], VOCAB, _plan({"search", "constraints"}))


# ---------------------------------------------------------------- the Python API and the CLI


@pytest.fixture(scope="module")
def translator():
    from seq2seq_kit.api import Translator
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec

    vocab = Vocabulary(tuple("abcdefgh"))
    spec = ModelSpec(len(vocab), len(vocab), hidden_size=8)
    model = get_backend("numpy").create(spec, seed=3)
    return Translator(model, vocab, vocab, backend="numpy", max_length=8)


def test_hypotheses_hold_the_constraints_with_any_beam(translator):
    texts = ["abc", "h", "", "gg"]
    constraints = [["gh", "a"], [], [], ["ccc"]]
    free = translator.hypotheses(texts, length_penalty=1.0)
    for options in ({}, {"beam": 3, "n_best": 2}):
        found = translator.hypotheses(texts, constraints=constraints, length_penalty=1.0, **options)
        for phrases, hyps in zip(constraints, found, strict=True):
            assert hyps[0].constraints_met
            assert all(p in hyps[0].text for p in phrases)
        plain = translator.hypotheses(texts, length_penalty=1.0, **options)
        assert found[1] == plain[1] and found[2] == plain[2]
    # beam 1: greedy decoding for the texts without constraints (a beam of one with a
    # length penalty would search on), even beside constrained ones
    assert translator.hypotheses(texts, constraints=constraints, length_penalty=1.0)[1] == free[1]


def test_hypotheses_refuse_bad_constraints(translator):
    with pytest.raises(TypeError, match="not one string"):
        translator.hypotheses(["abc"], constraints="a")
    with pytest.raises(TypeError, match=r"constraints\[0\] is one string"):
        translator.hypotheses(["abc"], constraints=["a"])
    with pytest.raises(TypeError, match=r"constraints\[0\]\[1\] is a int"):
        translator.hypotheses(["abc"], constraints=[["a", 3]])
    with pytest.raises(ConstraintError, match="2 lists for 1 texts"):
        translator.hypotheses(["abc"], constraints=[["a"], []])
    with pytest.raises(ConstraintError, match="input line 1: constraint 1: 'az'"):
        translator.hypotheses(["abc"], constraints=[["az"]])
    with pytest.raises(OptionError):
        translator.hypotheses(["abc"], constraints=[["a"]], sampling=True)


def _cli(model_dir, stdin: bytes, *args, monkeypatch, capsys):
    import io

    from seq2seq_kit.cli import main

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = main(["translate", "--model", str(model_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_translate_reads_constraints_after_the_source(translator, tmp_path, monkeypatch, capsys):
    model_dir = translator.save(tmp_path / "model")
    stdin = b"abc\tgh\ta\nh\n\ngg\tccc\n"
    code, out, err = _cli(model_dir, stdin, "--constraints", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    texts, constraints = ["abc", "h", "", "gg"], [["gh", "a"], [], [], ["ccc"]]
    expected = translator.translate(texts, constraints=constraints)
    assert out.split("\n")[:4] == expected
    # without the flag the second column is a target prefix, and a third is refused
    code, out, err = _cli(model_dir, b"abc\tgh\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and out.startswith("gh")
    code, out, err = _cli(model_dir, stdin, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "2 TABs" in err
    code, out, err = _cli(
        model_dir, b"abc\tgz\n", "--constraints", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "input line 1: constraint 1: 'gz': character 2: 'z'" in err
    code, out, err = _cli(
        model_dir, b"abc\t\n", "--constraints", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "constraint 1: '' has no target token" in err


def test_translate_warns_of_an_output_that_lacks_a_constraint(
    translator, tmp_path, monkeypatch, capsys
):
    model_dir = translator.save(tmp_path / "model")
    stdin = b"abc\tabcdefgh\nh\tb\n"
    args = ["--constraints", "--max-length", "4", "--beam", "2", "--n-best", "2"]
    code, out, err = _cli(model_dir, stdin, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    assert "input line 1: the outputs ranked 1, 2 lack a constraint" in err
    assert "(none holding every one was found within 4 tokens)" in err
    assert "input line 2: the outputs ranked 1" not in err
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[:2] for r in rows] == [["1", "1"], ["1", "2"], ["2", "1"], ["2", "2"]]
    assert "b" in rows[2][3]
