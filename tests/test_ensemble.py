"""Ensembles (:mod:`seq2seq_kit.ensemble`): an ensemble of a model with itself is the model,
an ensemble's step and scores are the weighted mean of its members', members may run on
different backends, and models that cannot form one are refused naming why."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seq2seq_kit
import seq2seq_kit.translator
from seq2seq_kit.api import Ensemble, Translator, ensemble, load_ensemble
from seq2seq_kit.batch import make_batch
from seq2seq_kit.cli import main
from seq2seq_kit.ensemble import EnsembleModel
from seq2seq_kit.errors import CapabilityError, EnsembleError, InputTooLongError
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec, TransformerSpec
from seq2seq_kit.vocab import Vocabulary

TEXTS = ["1", "7", "12", "984", "", "5"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two digits models trained apart: ``a`` with attention, ``b`` without."""
    root = tmp_path_factory.mktemp("ensemble")
    for name, flags in (("a", ["--attention", "dot", "--seed", "1"]), ("b", ["--seed", "7"])):
        assert main(["train", "--out", str(root / name), "--no-progress", *flags]) == 0
    return root / "a", root / "b"


def _same(left, right, tolerance):
    """The n-best lists are the same outputs, scores within ``tolerance``."""
    assert [[h.ids for h in hyps] for hyps in left] == [[h.ids for h in hyps] for hyps in right]
    for hyps_l, hyps_r in zip(left, right, strict=True):
        for h_l, h_r in zip(hyps_l, hyps_r, strict=True):
            assert h_l.text == h_r.text and h_l.truncated == h_r.truncated
            assert abs(h_l.score - h_r.score) <= tolerance


@pytest.mark.parametrize(
    "options",
    [
        {"alignments": True},
        {"beam": 3, "n_best": 3, "alignments": True},
        {"sampling": True, "num_samples": 2, "seed": 5},
    ],
    ids=["greedy", "beam", "sampling"],
)
def test_an_ensemble_of_a_model_with_itself_is_the_model(models, options):
    a, _ = models
    alone = seq2seq_kit.load(a)
    twice = load_ensemble([a, a], weights=[3.0, 1.0])
    expected, found = alone.hypotheses(TEXTS, **options), twice.hypotheses(TEXTS, **options)
    _same(expected, found, 1e-6)
    alignments = [[h.alignment for h in hyps] for hyps in found]
    assert alignments == [[h.alignment for h in hyps] for hyps in expected]
    if options.get("alignments"):
        pairs = zip(TEXTS, found, strict=True)
        assert all(h.alignment for text, hyps in pairs if text for h in hyps)
    assert twice.examples == alone.examples and alone.examples
    _, out_alone, weights_alone = alone.attention("984")
    _, out_twice, weights_twice = twice.attention("984")
    assert out_alone == out_twice
    np.testing.assert_allclose(weights_twice, weights_alone, atol=1e-6)


def _forced_score(translator: Translator, source: str, hyp) -> float:
    """The score ``translator`` alone gives ``hyp`` by teacher forcing (its EOS counted
    unless the output was cut at the length cap)."""
    src = translator.source_vocab.encode(source)
    ids = list(hyp.ids)
    log_probs = translator.model.log_probs(make_batch([src], [ids]))[0]
    targets = [*ids, translator.target_vocab.eos_id]
    scored = len(ids) if hyp.truncated else len(ids) + 1
    return float(sum(log_probs[t, targets[t]] for t in range(scored)))


@settings(max_examples=15, deadline=None)
@given(
    weights=st.lists(st.floats(0.05, 20.0), min_size=2, max_size=2),
    sources=st.lists(st.text("123456789", min_size=1, max_size=4), min_size=1, max_size=3),
    beam=st.integers(1, 3),
)
def test_an_ensemble_scores_the_weighted_mean_of_its_members(members, weights, sources, beam):
    """Each output's score is the weighted mean of the scores each member alone gives it
    (each member reading the output with its own state), whatever search chose it."""
    both = ensemble(members, weights)
    w = np.asarray(weights) / sum(weights)
    found = both.hypotheses(sources, beam=beam, n_best=beam)
    for source, hyps in zip(sources, found, strict=True):
        for hyp in hyps:
            alone = [_forced_score(m, source, hyp) for m in members]
            assert hyp.score == pytest.approx(float(w @ alone), abs=1e-4)


@pytest.fixture(scope="module")
def members(models):
    return [seq2seq_kit.load(path) for path in models]


def test_each_step_is_the_weighted_mean_of_the_members_log_probs(members):
    """Step by step, with states reordered as beam search reorders them: the members step
    on states of their own, and the ensemble's log-probabilities average theirs."""
    vocab = members[0].source_vocab
    src = np.array([vocab.encode("12"), vocab.encode("93")], dtype=np.int32)
    lengths = np.array([2, 2], dtype=np.int32)
    model = EnsembleModel([m.model for m in members], [0.5, 0.5])
    state = model.encode(src, lengths)
    alone = [m.model.encode(src, lengths) for m in members]
    rng = np.random.default_rng(0)
    prev = np.full(2, members[0].target_vocab.bos_id, dtype=np.int32)
    for _ in range(4):
        log_probs, state = model.step(prev, state)
        steps = [m.model.step(prev, s) for m, s in zip(members, alone, strict=True)]
        alone = [s for _, s in steps]
        np.testing.assert_allclose(
            log_probs, 0.5 * steps[0][0] + 0.5 * steps[1][0], rtol=0, atol=1e-6
        )
        assert not np.allclose(steps[0][0], steps[1][0])  # two models that differ
        index = rng.integers(0, 2, size=2).astype(np.int64)
        state = model.reorder(state, index)
        alone = [m.model.reorder(s, index) for m, s in zip(members, alone, strict=True)]
        prev = rng.integers(4, log_probs.shape[1], size=2).astype(np.int32)
    # attention: the one member that has it
    np.testing.assert_allclose(
        model.attention(state), members[0].model.attention(alone[0]), atol=1e-6
    )


def test_members_on_two_backends_decode_as_on_one(models):
    pytest.importorskip("torch")
    pytest.importorskip("seq2seq_kit_torch")
    a, b = models
    one = load_ensemble([a, b], weights=[0.6, 0.4], backends="numpy")
    two = load_ensemble([a, b], weights=[0.6, 0.4], backends=["numpy", "torch"])
    assert two.backend == "numpy+torch" and one.backend == "numpy+numpy"
    for options in ({}, {"beam": 3, "n_best": 2}):
        _same(one.hypotheses(TEXTS, **options), two.hypotheses(TEXTS, **options), 1e-5)


def _translator(tokens, tokenizer="char", seed=0, max_length=8, backend="numpy", spec=None):
    vocab = Vocabulary(tuple(tokens), tokenizer)
    spec = spec or ModelSpec(len(vocab), len(vocab), hidden_size=8)
    model = get_backend("numpy").create(spec, seed=seed)
    return Translator(model, vocab, vocab, backend=backend, max_length=max_length)


def test_different_vocabularies_are_refused_naming_the_first_difference():
    base = _translator("abcd")
    with pytest.raises(EnsembleError) as exc:
        ensemble([base, _translator("abxd")], names=["A", "B"])
    message = str(exc.value)
    assert "source sides of A and B" in message and "id 6: 'c' in A, 'x' in B" in message
    with pytest.raises(EnsembleError, match="id 8: nothing .* in A, 'e' in B"):
        ensemble([base, _translator("abcde")], names=["A", "B"])
    with pytest.raises(EnsembleError, match="tokenizer 'char' against 'word'"):
        ensemble([base, _translator("abcd", tokenizer="word")], names=["A", "B"])


def test_tokenizers_are_compared_by_how_they_split_text(tmp_path):
    """Options that only shaped the vocabulary (``word``'s ``min_frequency``, ``max_size``)
    or the training (SentencePiece's) do not refuse an ensemble whose vocabularies and
    tokenizer files are equal; those that change the pieces do, and so do other files."""
    pytest.importorskip("sentencepiece")
    from seq2seq_kit.importers.marian.tokenizer import MarianSentencePiece
    from seq2seq_kit.tokenizers import (
        SentencePieceOptions,
        SentencePieceTokenizer,
        WordOptions,
        WordTokenizer,
    )

    def word(**options):
        return WordTokenizer(WordOptions(**options))

    words = ("one", "three", "two")
    loose = word(min_frequency=2, max_size=50000)
    ensemble([_translator(words, word(min_frequency=2)), _translator(words, loose)])
    texts = ["one two three", "three two one", "two two", "one one three"] * 5
    trained = SentencePieceTokenizer(SentencePieceOptions(vocab_size=12))
    trained.train(texts)
    pieces = Vocabulary.build(texts, trained).tokens
    [name] = trained.save(tmp_path, "")
    again = SentencePieceTokenizer(
        SentencePieceOptions(vocab_size=8000, seed_sentencepiece_size=100), tmp_path / name
    )
    assert again.encode("one two") == trained.encode("one two")
    ensemble([_translator(pieces, trained), _translator(pieces, again)])
    other = SentencePieceTokenizer(SentencePieceOptions(vocab_size=12, model_type="bpe"))
    other.train(texts)
    with pytest.raises(EnsembleError, match="'sentencepiece' from different files"):
        ensemble([_translator(pieces, trained), _translator(pieces, other)])
    proto = (tmp_path / name).read_bytes()
    ended = [_translator(pieces, MarianSentencePiece(proto, end)) for end in (True, False)]
    with pytest.raises(EnsembleError, match="'marian' splits text with options"):
        ensemble(ended)

    class Plugin(WordTokenizer):  # a tokenizer that does not say which options split
        name = "plugin"
        splitting_options = None

    with pytest.raises(EnsembleError, match="'plugin' splits text with options"):
        ensemble([_translator(words, Plugin(WordOptions(max_size=n))) for n in (8, 9)])


def test_the_target_side_is_checked_too():
    base = _translator("abcd")
    other = _translator("abcd")
    other.target_vocab = Vocabulary(tuple("abce"))
    with pytest.raises(EnsembleError, match="target sides of model 1 and model 2 .* id 7"):
        ensemble([base, other])


def test_weights_must_be_one_positive_finite_number_per_model():
    members = [_translator("abcd"), _translator("abcd", seed=1)]
    for weights, message in [
        ([1.0], "1 weights for 2 models"),
        ([1.0, 0.0], r"weights\[1\] = 0.0"),
        ([1.0, float("nan")], r"weights\[1\] = nan"),
        ([1.0, -2], r"weights\[1\] = -2"),
        ([True, 1.0], r"weights\[0\] = True is not a number"),
    ]:
        with pytest.raises(EnsembleError, match=message):
            ensemble(members, weights)
    assert ensemble(members, [3, 1]).weights == (0.75, 0.25)


def test_weights_whose_sum_overflows_keep_their_shares():
    """``[1e308, 1e308]`` sum to inf in float64: the shares are still halves, and a weight
    whose share vanishes in float32 is refused rather than dropped from every step."""
    members = [_translator("abcd"), _translator("abcd", seed=1)]
    halves = ensemble(members, [1e308, 1e308])
    assert halves.weights == (0.5, 0.5)
    assert halves.hypotheses(["ab"], beam=2, n_best=2) == ensemble(members).hypotheses(
        ["ab"], beam=2, n_best=2
    )
    shares = ensemble(members, [1.5e308, 0.5e308]).weights
    assert shares == pytest.approx((0.75, 0.25), rel=1e-15) and math.fsum(shares) == 1
    with pytest.raises(EnsembleError, match=r"weights\[1\] = 1e-300 is negligible beside"):
        ensemble(members, [1e10, 1e-300])
    with pytest.raises(EnsembleError, match=r"weights\[0\] = 1e-320 is negligible"):
        load_ensemble(["unused", "unused"], weights=[1e-320, 1e300])  # before any load


def test_an_engine_with_its_own_search_cannot_join(monkeypatch):
    numpy = get_backend("numpy")
    engine = dataclasses.replace(numpy, name="engine", capabilities=numpy.capabilities | {"search"})
    monkeypatch.setattr(
        seq2seq_kit.translator, "get_backend", lambda n: engine if n == "engine" else numpy
    )
    members = [_translator("abcd"), _translator("abcd", backend="engine")]
    with pytest.raises(CapabilityError, match="model 2: backend 'engine' decodes with its own"):
        ensemble(members)


def test_beam_search_needs_every_member_to_declare_beam(monkeypatch):
    numpy = get_backend("numpy")
    greedy_only = dataclasses.replace(
        numpy, name="greedy-only", capabilities=numpy.capabilities - {"beam"}
    )
    monkeypatch.setattr(
        seq2seq_kit.translator,
        "get_backend",
        lambda n: greedy_only if n == "greedy-only" else numpy,
    )
    both = ensemble([_translator("abcd"), _translator("abcd", backend="greedy-only")])
    assert "beam" not in both.capabilities
    both.translate(["ab"])
    with pytest.raises(CapabilityError, match="'numpy\\+greedy-only' does not declare the 'beam'"):
        both.translate(["ab"], beam=2)


def test_the_tightest_length_limits_of_the_members_hold():
    rnn = _translator("abcd", max_length=8)
    spec = TransformerSpec(8, 8, 1, 1, d_model=8, num_heads=2, ff_size=8, max_positions=4)
    small = _translator("abcd", max_length=20, spec=spec)
    both = ensemble([rnn, small])
    assert isinstance(both, Ensemble) and both.max_length == 8
    assert both.decoding_limit() == 3  # the Transformer's max_positions - 1
    for options in ({}, {"beam": 2, "n_best": 2}):
        for hyp in both.hypotheses(["abcd"], **options)[0]:
            assert len(hyp.ids) <= 3
    with pytest.raises(InputTooLongError):
        both.translate(["abcda"])
    assert both.has_attention  # the Transformer's


def test_an_ensemble_is_not_one_model(tmp_path):
    both = ensemble([_translator("abcd"), _translator("abcd", seed=1)])
    with pytest.raises(EnsembleError, match="several models"):
        both.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(EnsembleError, match="train each member"):
        both.model.train_step([])


def _translate(capsys, *args):
    code = main(["translate", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_the_command_line_decodes_with_an_ensemble(models, capsys):
    a, b = models
    beam = ["--beam", "3", "--n-best", "2", "12", "5"]
    alone = _translate(capsys, "--model", a, *beam)
    assert _translate(capsys, "--model", a, "--model", a, *beam) == alone
    weighted = _translate(capsys, "--model", a, "--model", b, "--weights", "0.6,0.4", *beam)
    expected = load_ensemble([a, b], [0.6, 0.4]).hypotheses(["12", "5"], beam=3, n_best=2)
    assert weighted == "".join(
        f"{line}\t{rank}\t{h.score:.4f}\t{h.text}\n"
        for line, hyps in enumerate(expected, start=1)
        for rank, h in enumerate(hyps, start=1)
    )
    assert weighted != alone
    # weights whose sum overflows weigh as their shares do: equal here
    equal = _translate(capsys, "--model", a, "--model", b, *beam)
    assert _translate(capsys, "--model", a, "--model", b, "--weights", "1e308,1e308", *beam) == (
        equal
    )
    assert main(["evaluate", "--model", str(a), "--model", str(b), "--data", "digits"]) == 0
    assert "exact match" in capsys.readouterr().out


def test_the_command_line_refuses_flags_that_do_not_fit(models, tmp_path, capsys):
    a, b = models
    for args, message in [
        (["--model", a, "--weights", "1"], "--weights weighs the models of an ensemble"),
        (["--model", a, "--model", b, "--weights", "1"], "--weights lists 1 for 2 --model"),
        (["--model", a, "--backend", "numpy", "--backend", "numpy"], "--backend given 2 times"),
    ]:
        assert main(["translate", *map(str, args), "1"]) == 2
        assert message in capsys.readouterr().err
    for weights, why in [
        ("1,0", "weight 2, '0': a weight must be a finite number above 0"),
        ("1,x", "weight 2, 'x', is not a number"),
        ("1,inf", "weight 2, 'inf': a weight must be"),
        # a value that looks like a flag to argparse, which would expect one argument
        ("-1,2", "weight 1, '-1': a weight must be a finite number above 0"),
        ("-.5", "weight 1, '-.5': a weight must be"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["translate", "--model", str(a), "--model", str(b), "--weights", weights, "1"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"argument --weights: {weights!r}: {why}" in err, err
    other = tmp_path / "words"
    data = tmp_path / "pairs.tsv"
    data.write_text("ab\tba\nba\tab\n", encoding="utf-8")
    flags = ["--data", str(data), "--epochs", "1", "--no-progress"]
    assert main(["train", "--out", str(other), *flags]) == 0
    capsys.readouterr()
    assert main(["translate", "--model", str(a), "--model", str(other), "1"]) == 2
    err = capsys.readouterr().err
    assert f"the source sides of {a} and {other} differ" in err and "id 4" in err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_server_serves_an_ensemble(models, monkeypatch):
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 beside httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    import seq2seq_kit.serving.runtime
    from seq2seq_kit.config import ServeConfig
    from seq2seq_kit.serving.app import create_app

    a, b = models
    served, reloaded = {}, {}

    def run(models, settings, sources=None):
        served.update(models)
        reloaded.update(sources or {})
        return 0

    monkeypatch.setattr(seq2seq_kit.serving.runtime, "run", run)
    assert main(["serve", "--model", f"both={a}+{b}", "--model", f"one={a}"]) == 0
    assert isinstance(served["both"], Ensemble) and not isinstance(served["one"], Ensemble)
    assert served["both"].names == (str(a), str(b))
    assert reloaded == {"one": str(a)}  # a reload loads one directory
    settings = ServeConfig(allow_reload=True)
    json = {"content-type": "application/json"}
    with TestClient(create_app(served, settings, sources=reloaded)) as client:
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        body = {"model": "both", "texts": ["12", "5"], "beam": 3, "n_best": 2}
        reply = client.post("/v1/translate", json=body).json()
        assert client.post("/v1/models/both/reload", headers=json).status_code == 409
        assert client.post("/v1/models/one/reload", headers=json).status_code == 200
    assert listed["both"]["backend"] == "numpy+numpy"
    # the members' runs are theirs: the ensemble lists no training of its own, and the
    # first member's decoding defaults and examples
    assert listed["both"]["training"] is None
    assert listed["one"]["training"]["dataset"] == "digits"
    assert listed["one"]["training"]["epochs"] > 0
    assert listed["both"]["decode"] == listed["one"]["decode"]
    assert listed["both"]["examples"] == listed["one"]["examples"] != []
    expected = served["both"].hypotheses(["12", "5"], beam=3, n_best=2)
    got = [[(h["text"], h["score"]) for h in r["hypotheses"]] for r in reply["translations"]]
    assert got == [[(h.text, pytest.approx(h.score)) for h in hyps] for hyps in expected]
    assert main(["serve", "--model", f"both={a}++{b}"]) == 2
