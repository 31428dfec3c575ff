"""The CTranslate2 backend and export format: canonical Transformer weights run by
CTranslate2 give the NumPy reference's greedy outputs and scores; beam search and n-best
lists stay close to the core's; what CTranslate2 cannot run is refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")

from seq2seq_kit import api  # noqa: E402
from seq2seq_kit.batching import make_batch  # noqa: E402
from seq2seq_kit.cli import main  # noqa: E402
from seq2seq_kit.config import Config  # noqa: E402
from seq2seq_kit.decoding import greedy, search  # noqa: E402
from seq2seq_kit.errors import BackendError, ExportError, Seq2SeqError  # noqa: E402
from seq2seq_kit.plugins import get_backend, registry  # noqa: E402
from seq2seq_kit.runtime import Runtime  # noqa: E402
from seq2seq_kit.spec import ModelSpec, TransformerSpec  # noqa: E402
from seq2seq_kit.testing.base import (  # noqa: E402
    TRANSFORMER_BASE,
    TRANSFORMER_VARIANTS,
    perturbed_weights,
)
from seq2seq_kit.vocab import Vocabulary, pad  # noqa: E402
from seq2seq_kit.weights import initial_weights  # noqa: E402

if "ctranslate2" not in registry().backends:
    pytest.skip("the seq2seq-kit-ctranslate2 backend is not installed", allow_module_level=True)

from seq2seq_kit_ctranslate2.convert import to_ctranslate2  # noqa: E402
from seq2seq_kit_ctranslate2.export import export_checkpoint  # noqa: E402
from seq2seq_kit_ctranslate2.export import load as load_export  # noqa: E402

INPUTS = ["7", "42", "305", "1999", "80", "12", "6", "1000"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small Transformer trained by the NumPy backend on num2words for a few seconds
    (peaked enough that beam search agrees with greedy decoding), and its directory."""
    config = Config.model_validate(
        {
            "model": {
                "architecture": "transformer",
                "d_model": 32,
                "num_heads": 2,
                "ff_size": 64,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "dropout": 0.0,
            },
            "data": {"source": "num2words", "limit": 1000},
            "train": {"epochs": 30, "batch_size": 32, "learning_rate": 0.005, "progress": False},
        }
    )
    out = tmp_path_factory.mktemp("ct2") / "model"
    translator = api.train(config, backend="numpy", out=out, seed=0)
    return translator, out


def _rows():
    rows = [[4 + (i * j) % 7 for j in range(n)] for i, n in enumerate([1, 9, 3, 1, 6, 2, 5])]
    return pad(rows), np.array([len(r) for r in rows], dtype=np.int32)


@pytest.mark.parametrize(
    "options", [o for o, needs in TRANSFORMER_VARIANTS if "dropout" not in needs]
)
def test_greedy_equals_numpy_on_random_weights(options):
    """Every option of the spec (pre/post norm, ReLU/GELU, sinusoidal/learned positions,
    shared and tied embeddings): ids identical, scores within 1e-4, truncation flagged."""
    spec = TransformerSpec(
        **{"src_vocab_size": 11, "tgt_vocab_size": 13, **TRANSFORMER_BASE, **options}
    )
    weights = perturbed_weights(spec, 3)
    vocab = Vocabulary(tuple("abcdefghi"[: spec.tgt_vocab_size - 4]))
    reference = get_backend("numpy").create(spec)
    reference.set_weights(weights)
    model = get_backend("ctranslate2").create(spec)
    model.set_weights(weights)
    src, lengths = _rows()
    for max_length in (12, 3):
        expected = greedy(reference, src, lengths, vocab, max_length)
        got = [hyps[0] for hyps in search(model, src, lengths, vocab, max_length)]
        assert [(h.ids, h.truncated) for h in got] == [(h.ids, h.truncated) for h in expected]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-4)
        assert any(h.truncated for h in got) or max_length == 12


def test_export_runs_in_plain_ctranslate2(trained, tmp_path):
    translator, out = trained
    files = export_checkpoint(translator.checkpoint(), tmp_path / "ct2")
    assert {f.name for f in files} >= {"model.bin", "config.json"}
    engine = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu", intra_threads=1)
    sources = [list(text) for text in INPUTS]  # character tokens in
    results = engine.translate_batch(
        sources, beam_size=1, max_decoding_length=translator.max_length, min_decoding_length=0
    )
    words = ["".join(r.hypotheses[0]) for r in results]  # character tokens out
    assert words == translator.translate(INPUTS)
    assert sum(w == e for w, e in zip(words, ["seven", "forty-two"], strict=False)) >= 1


def test_export_refuses_an_rnn_and_a_used_directory(trained, tmp_path):
    translator, _ = trained
    rnn = api.train(Config(), backend="numpy", data="digits", epochs=1)
    with pytest.raises(ExportError, match="(?i)transformer models only.*'rnn'"):
        export_checkpoint(rnn.checkpoint(), tmp_path / "rnn")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ExportError, match="not an empty directory"):
        export_checkpoint(translator.checkpoint(), tmp_path / "used")


def test_loaded_backend_gives_numpy_greedy_outputs(trained):
    translator, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    expected = translator.hypotheses(INPUTS)
    got = ct2.hypotheses(INPUTS)
    assert [h[0].text for h in got] == [h[0].text for h in expected]
    np.testing.assert_allclose([h[0].score for h in got], [h[0].score for h in expected], atol=1e-4)
    truncated = ct2.hypotheses(["1999"], max_length=3)[0][0]
    assert truncated.truncated and len(truncated.ids) == 3


def test_beam_and_n_best_close_to_the_core(trained):
    translator, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    for beam, n_best, alpha in ((5, 1, 0.0), (4, 3, 1.0)):
        options = {"beam": beam, "n_best": n_best, "length_penalty": alpha}
        expected = translator.hypotheses(INPUTS, **options)
        got = ct2.hypotheses(INPUTS, **options)
        assert [h[0].ids for h in got] == [h[0].ids for h in expected]
        np.testing.assert_allclose(
            [h[0].score for h in got], [h[0].score for h in expected], atol=1e-4
        )
        for hyps in got:
            assert 1 <= len(hyps) <= n_best
            assert len({h.ids for h in hyps}) == len(hyps)
            ranks = [h.score / ((5 + len(h.ids) + 1) / 6) ** alpha for h in hyps]
            assert ranks == sorted(ranks, reverse=True)
    assert ct2.translate(INPUTS, beam=5) == translator.translate(INPUTS, beam=5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("rule", [True, 2.0])
def test_a_count_searches_as_the_core(trained, rule, alpha):
    # CTranslate2 stops at beam x patience finished hypotheses when it has a length
    # penalty (the backend gives it a negligible one without): the core's rule for
    # early_stopping True or a patience
    translator, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    options = {"beam": 4, "n_best": 3, "length_penalty": alpha, "early_stopping": rule}
    expected = translator.hypotheses(INPUTS, **options)
    got = ct2.hypotheses(INPUTS, **options)
    assert [h[0].ids for h in got] == [h[0].ids for h in expected]
    np.testing.assert_allclose([h[0].score for h in got], [h[0].score for h in expected], atol=1e-4)


@pytest.mark.parametrize(("beam", "patience"), [(3, 0.5), (2, 0.1), (10, 0.7), (4, 0.25)])
def test_a_patience_below_one_decodes(trained, beam, patience):
    # CTranslate2 refuses more hypotheses than beam x patience, and a patience under
    # 1 / beam; the core counts max(1, round(beam x patience)) finished hypotheses
    translator, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    options = {"beam": beam, "n_best": beam, "early_stopping": patience}
    expected = translator.hypotheses(INPUTS, **options)
    got = ct2.hypotheses(INPUTS, **options)
    assert [h[0].ids for h in got] == [h[0].ids for h in expected]
    for hyps in got:
        assert 1 <= len(hyps) <= beam


def test_greedy_with_a_length_penalty_keeps_the_core_s_scores(trained):
    # a penalty ranks nothing in greedy decoding: the scores stay sums of log-probabilities
    translator, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    expected = translator.hypotheses(INPUTS, length_penalty=1.5)
    got = ct2.hypotheses(INPUTS, length_penalty=1.5)
    assert [h[0].ids for h in got] == [h[0].ids for h in expected]
    np.testing.assert_allclose([h[0].score for h in got], [h[0].score for h in expected], atol=1e-4)


def test_rnn_refused_by_name():
    with pytest.raises(BackendError, match="(?i)transformer models only.*'rnn'"):
        get_backend("ctranslate2").create(ModelSpec(11, 13))


def test_training_and_attention_refused(trained):
    _, out = trained
    ct2 = api.load(out, backend="ctranslate2")
    with pytest.raises(Seq2SeqError, match="own search"):
        ct2.attention("42")
    with pytest.raises(BackendError, match="inference-only"):
        ct2.model.train_step(make_batch([[4, 5]], [[4]]))
    assert "train" not in get_backend("ctranslate2").capabilities


def test_training_with_it_is_refused():
    config = Config.model_validate({"model": {"architecture": "transformer", "d_model": 8}})
    config.train.progress = False
    with pytest.raises(Seq2SeqError, match="ctranslate2"):
        api.train(config, backend="ctranslate2", data="digits", epochs=1)


def test_empty_source_refused_by_the_model():
    spec = TransformerSpec(11, 13, **TRANSFORMER_BASE)
    model = get_backend("ctranslate2").create(spec)
    with pytest.raises(ValueError, match="empty source"):
        model.search(
            pad([[4], []]),
            np.array([1, 0], dtype=np.int32),
            max_length=3,
            beam=1,
            n_best=1,
            length_penalty=0.0,
        )


# ------------------------------------------------------------------ quantization


def _cpu_runs(scheme: str) -> bool:
    return scheme in ctranslate2.get_supported_compute_types("cpu")


def test_an_int8_export_runs_in_plain_ctranslate2_and_as_the_backend_runs_int8(
    trained, tmp_path, capsys
):
    translator, model_dir = trained
    out = {}
    for scheme in ("float32", "int8"):
        out[scheme] = tmp_path / scheme
        flags = [] if scheme == "float32" else ["--quantization", "int8"]
        args = ["export", "--model", str(model_dir), "--format", "ctranslate2"]
        assert main([*args, "--out", str(out[scheme]), *flags]) == 0
    capsys.readouterr()
    for scheme, recorded in (("float32", None), ("int8", "int8")):
        assert json.loads((out[scheme] / "manifest.json").read_text())["quantization"] == recorded
        assert json.loads((out[scheme] / "export.json").read_text())["quantization"] == recorded
    # plain CTranslate2 runs the export in the scheme it holds
    engine = ctranslate2.Translator(str(out["int8"]), device="cpu", intra_threads=1)
    assert engine.compute_type == "int8_float32"  # int8 on a CPU
    # our backend too, as from the model directory with Runtime.quantization
    exported = load_export(out["int8"])
    assert exported.model.compute_type == "int8_float32"
    from_export = exported.translator().hypotheses(INPUTS)
    quantized = api.load(model_dir, backend="ctranslate2", quantization="int8")
    assert quantized.model.compute_type == "int8_float32"
    expected = quantized.hypotheses(INPUTS)
    assert [h[0].ids for h in from_export] == [h[0].ids for h in expected]
    np.testing.assert_allclose(
        [h[0].score for h in from_export], [h[0].score for h in expected], atol=1e-5
    )
    plain = engine.translate_batch([list(t) for t in INPUTS], beam_size=1, min_decoding_length=0)
    assert ["".join(r.hypotheses[0]) for r in plain] == [h[0].text for h in from_export]
    # and a float32 export runs as the float32 backend does
    exact = load_export(out["float32"])
    assert exact.model.compute_type == "float32"
    assert exact.translator().translate(INPUTS) == translator.translate(INPUTS)
    scores = [h[0].score for h in expected]
    assert scores != [h[0].score for h in exact.translator().hypotheses(INPUTS)]


def test_the_runtime_s_scheme_overrides_the_export_s(trained, tmp_path):
    translator, _ = trained
    export_checkpoint(translator.checkpoint(), tmp_path / "f32")
    _forge_manifest(tmp_path / "f32", "ctranslate2")
    assert load_export(tmp_path / "f32", Runtime(quantization="int8")).model.compute_type == (
        "int8_float32"
    )
    export_checkpoint(translator.checkpoint(), tmp_path / "i16", "int16")
    _forge_manifest(tmp_path / "i16", "ctranslate2")
    if _cpu_runs("int16"):
        assert load_export(tmp_path / "i16").model.compute_type == "int16"
    else:  # the export's own scheme falls back to the nearest the device runs...
        assert load_export(tmp_path / "i16").model.compute_type == "int8_float32"
        # ...one asked for by name is refused
        with pytest.raises(BackendError, match="'int16' does not run on cpu"):
            load_export(tmp_path / "i16", Runtime(quantization="int16"))


def _forge_manifest(out, format):
    """The manifest ``export_model`` writes, for a directory ``export_checkpoint`` wrote."""
    from seq2seq_kit.integrity import file_sha256

    files = {p.name: file_sha256(p) for p in out.iterdir()}
    manifest = {"format": "seq2seq-kit-export", "format_version": 1, "export_format": format}
    (out / "manifest.json").write_text(json.dumps({**manifest, "files": files}))


@pytest.mark.parametrize("scheme", ["float16", "bfloat16", "int16"])
def test_a_scheme_the_cpu_cannot_run_is_refused_by_name(scheme):
    if _cpu_runs(scheme):
        pytest.skip(f"this CPU runs {scheme}")
    spec = TransformerSpec(11, 13, **TRANSFORMER_BASE)
    with pytest.raises(BackendError, match=f"'{scheme}' does not run on cpu .*it runs .*int8"):
        get_backend("ctranslate2").create(spec, runtime=Runtime(device="cpu", quantization=scheme))


def test_quantizing_leaves_the_weights_given_as_they_were(tmp_path):
    spec = TransformerSpec(11, 13, **TRANSFORMER_BASE)
    weights = perturbed_weights(spec, 4)
    before = {name: w.copy() for name, w in weights.items()}
    to_ctranslate2(spec, weights, quantization="int8")  # CTranslate2 scales in place
    assert all(np.array_equal(weights[name], before[name]) for name in before)


def test_int8_weights_take_about_a_quarter_of_the_bytes(tmp_path):
    # a mid-sized model (1.3M weights; the shared table stored once in both), where the
    # weights, not the vocabularies and the position table, make the size
    spec = TransformerSpec(
        2000, 2000, d_model=128, ff_size=512, share_embeddings=True, tie_output_embeddings=True
    )
    weights = initial_weights(spec, 0)
    size = {}
    for scheme in (None, "int8", "int16", "float16"):
        (tmp_path / str(scheme)).mkdir()
        to_ctranslate2(spec, weights, quantization=scheme).save(str(tmp_path / str(scheme)))
        size[scheme] = (tmp_path / str(scheme) / "model.bin").stat().st_size
    assert size["int8"] <= 0.3 * size[None]
    assert size["int16"] <= 0.55 * size[None] and size["float16"] <= 0.55 * size[None]
