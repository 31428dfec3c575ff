"""The ONNX Runtime backend (inference only) and the ``onnx`` export format, against the
NumPy backend on models it trained: CLI export, translation with ``--backend onnx``, an
exported directory run with plain onnxruntime sessions, and the refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from seq2seq_kit.api import load, train  # noqa: E402
from seq2seq_kit.cli import main  # noqa: E402
from seq2seq_kit.config import Config  # noqa: E402
from seq2seq_kit.decoding import greedy  # noqa: E402
from seq2seq_kit.plugins import registry  # noqa: E402
from seq2seq_kit.spec import ModelSpec, TransformerSpec  # noqa: E402
from seq2seq_kit.vocab import pad  # noqa: E402
from seq2seq_kit.weights import initial_weights  # noqa: E402

if "onnx" not in registry().backends:
    pytest.skip("the onnx backend is not installed", allow_module_level=True)

INPUTS = ["12", "7", "305", "48", "999", "1000", "61"]


def _train(out, model: dict, epochs: int = 20) -> None:
    config = Config.model_validate(
        {
            "data": {"source": "num2words", "limit": 200},
            "model": model,
            "train": {
                "epochs": epochs,
                "batch_size": 16,
                "learning_rate": 0.005,
                "progress": False,
                "seed": 3,
            },
        }
    )
    train(config, backend="numpy", out=out)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``{"rnn": dir, "transformer": dir}``: an RNN with general attention over a
    bidirectional GRU encoder, and a pre-norm Transformer, each trained briefly by NumPy."""
    root = tmp_path_factory.mktemp("onnx-models")
    rnn = {
        "architecture": "rnn",
        "hidden_size": 24,
        "embedding_size": 12,
        "cell": "gru",
        "bidirectional": True,
        "attention": "general",
    }
    transformer = {
        "architecture": "transformer",
        "d_model": 16,
        "num_heads": 2,
        "ff_size": 32,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "activation": "gelu",
        "positions": "learned",
        "max_positions": 64,
    }
    _train(root / "rnn", rnn)  # about a second each: outputs like "three hundred and fifty"
    _train(root / "transformer", transformer)
    return {"rnn": root / "rnn", "transformer": root / "transformer"}


def _translate(capsys, model, backend, *extra) -> list[str]:
    assert main(["translate", "--model", str(model), "--backend", backend, *extra, *INPUTS]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_translate_with_onnx_equals_numpy(models, capsys, kind):
    expected = _translate(capsys, models[kind], "numpy")
    assert len(expected) == len(INPUTS) and len(set(expected)) > 3  # varied, trained outputs
    assert _translate(capsys, models[kind], "onnx") == expected
    beam = ["--beam", "3", "--n-best", "2"]
    assert _translate(capsys, models[kind], "onnx", *beam) == _translate(
        capsys, models[kind], "numpy", *beam
    )


@dataclass
class _PlainSessions:
    """The decoding contract over an export's two graphs run with plain onnxruntime
    sessions, as ``export.json`` documents them: nothing of the onnx backend is used."""

    encoder: object
    step_session: object
    meta: dict

    def encode(self, src_ids, src_lengths):
        names = [o["name"] for o in self.meta["encoder"]["outputs"]]
        feed = {"src_ids": src_ids.astype(np.int64), "src_lengths": src_lengths.astype(np.int64)}
        return dict(zip(names, self.encoder.run(None, feed), strict=True))

    def step(self, prev_ids, state):
        names = [o["name"] for o in self.meta["decoder_step"]["outputs"]]
        kinds = self.meta["state"]
        feed = {name: state[name] for name in kinds["carried"] + kinds["appended"]}
        feed.update({name: state[name] for name in kinds["constant"]})
        feed["prev_ids"] = np.asarray(prev_ids, dtype=np.int64)
        out = dict(zip(names, self.step_session.run(None, feed), strict=True))
        new = dict(state)
        new.update({name: out[f"next_{name}"] for name in kinds["carried"]})
        for name in kinds["appended"]:
            new[name] = np.concatenate([state[name], out[f"new_{name}"]], axis=2)
        return out["log_probs"], new

    def reorder(self, state, index):
        return {k: v if v.ndim == 0 else v[index] for k, v in state.items()}


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_exported_directory_runs_with_plain_onnxruntime(models, tmp_path, capsys, kind):
    import onnxruntime as ort

    from seq2seq_kit.api import load

    out = tmp_path / "exported"
    assert (
        main(["export", "--model", str(models[kind]), "--format", "onnx", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in printed} >= {
        "encoder.onnx",
        "decoder_step.onnx",
        "export.json",
    }
    meta = json.loads((out / "export.json").read_text())
    assert meta["opset"] == 17 and meta["spec"]["architecture"] == kind
    assert meta["examples"] == load(models[kind], backend="numpy").examples != []
    if kind == "transformer":  # the caches come back one position at a time
        assert meta["state"]["appended"] == sorted(
            f"self_{part}.{layer}" for part in ("key", "value") for layer in range(2)
        )
        new = {o["name"]: o["shape"] for o in meta["decoder_step"]["outputs"]}
        assert new["new_self_key.0"] == ["batch", 2, 1, 8]
    else:
        assert meta["state"]["appended"] == []
    sessions = _PlainSessions(
        ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"]),
        ort.InferenceSession(str(out / "decoder_step.onnx"), providers=["CPUExecutionProvider"]),
        meta,
    )
    reference = load(models[kind], backend="numpy")
    ids = [reference.source_vocab.encode(text) for text in INPUTS]
    src, lengths = pad(ids), np.array([len(i) for i in ids], dtype=np.int32)
    vocab = reference.target_vocab
    plain = greedy(sessions, src, lengths, vocab, meta["max_length"])
    expected = greedy(reference.model, src, lengths, vocab, meta["max_length"])
    assert [h.ids for h in plain] == [h.ids for h in expected]
    np.testing.assert_allclose([h.score for h in plain], [h.score for h in expected], atol=1e-4)
    # the backend's own loader reads the directory back, vocabularies included
    from seq2seq_kit_onnx.export import load as load_export

    exported = load_export(out)
    assert exported.target_vocab == vocab and exported.source_vocab == reference.source_vocab
    again = greedy(exported.model, src, lengths, vocab, meta["max_length"])
    assert [h.ids for h in again] == [h.ids for h in expected]


def test_transformer_caches_keep_older_states_as_they_were():
    """The backend grows the self-attention caches in buffers it owns: stepping a state
    twice, stepping an older state after a newer one, reordering and growing past the first
    buffer's capacity must each give the NumPy reference's log-probabilities."""
    from seq2seq_kit_onnx.cache import FIRST_CAPACITY

    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import TransformerSpec
    from seq2seq_kit.weights import initial_weights

    spec = TransformerSpec(
        11, 13, d_model=8, num_heads=2, ff_size=16, encoder_layers=1, decoder_layers=2,
        max_positions=40,
    )  # fmt: skip
    weights = initial_weights(spec, 5)
    onnx_model, numpy_model = (get_backend(b).create(spec, seed=0) for b in ("onnx", "numpy"))
    for model in (onnx_model, numpy_model):
        model.set_weights(weights)
    src = np.array([[3, 4, 5], [6, 7, 0]], dtype=np.int32)
    lengths = np.array([3, 2], dtype=np.int32)
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 12, size=(FIRST_CAPACITY + 8, 2)).astype(np.int32)

    def walk(model):
        """Every log-probability array of the script below, in order."""
        out, states = [], [model.encode(src, lengths)]
        for step_ids in ids:  # one branch past the first buffer's capacity
            logp, state = model.step(step_ids, states[-1])
            out.append(logp)
            states.append(state)
        # older states stepped again, with other ids: they must not write where the states
        # after them read
        out.append(model.step(ids[10] + 1, states[10])[0])
        again, branch = model.step(ids[3] + 1, states[3])
        out += [again, model.step(ids[4], branch)[0], model.step(ids[7], states[-1])[0]]
        moved = model.reorder(states[12], np.array([1, 0, 1]))
        out.append(model.step(np.array([5, 6, 7], dtype=np.int32), moved)[0])
        out.append(model.step(ids[12], states[12])[0])  # the reordered-from state unchanged
        return out

    got, expected = walk(onnx_model), walk(numpy_model)
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"log-probs {i}")
    np.testing.assert_array_equal(got[-1], got[12])  # the same state, the same step


def test_transformer_caches_reordered_at_every_step_as_beam_search_does():
    """A reorder one step after a reorder keeps room for one position only, and one within
    each source's rows keeps the source's arrays: the steps after them, past that room, and
    the states reordered from give the NumPy reference's log-probabilities."""
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import TransformerSpec
    from seq2seq_kit.weights import initial_weights

    spec = TransformerSpec(
        11, 13, d_model=8, num_heads=2, ff_size=16, encoder_layers=1, decoder_layers=2,
        max_positions=40,
    )  # fmt: skip
    weights = initial_weights(spec, 6)
    onnx_model, numpy_model = (get_backend(b).create(spec, seed=0) for b in ("onnx", "numpy"))
    for model in (onnx_model, numpy_model):
        model.set_weights(weights)
    src = np.array([[3, 4, 5], [6, 7, 0]], dtype=np.int32)
    lengths = np.array([3, 2], dtype=np.int32)

    def walk(model):
        rng = np.random.default_rng(1)  # the same ids and reorders for both models
        out, state = [], model.reorder(model.encode(src, lengths), np.array([0, 0, 1, 1]))
        kept = []
        for t in range(20):  # reordered after every step, as beam search's rows
            logp, state = model.step(rng.integers(4, 12, size=4).astype(np.int32), state)
            out.append(logp)
            kept.append(state)
            if t % 3:  # within each source's rows (beam search), or across them
                index = np.array([rng.integers(0, 2), rng.integers(0, 2), 3, 2])
            else:
                index = rng.integers(0, 4, size=4)
            state = model.reorder(state, index)
        for _ in range(3):  # then steps without reorders, past the room kept
            logp, state = model.step(np.array([4, 5, 6, 7], dtype=np.int32), state)
            out.append(logp)
        out.append(model.step(np.array([8, 9, 10, 11], dtype=np.int32), kept[5])[0])
        return out

    got, expected = walk(onnx_model), walk(numpy_model)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"log-probs {i}")


def _ops(path) -> dict[str, int]:
    """How many nodes of each operator a graph file holds."""
    import collections

    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def _weight_matmuls(path) -> int:
    """The float ``MatMul`` nodes of a graph whose second input is a weight."""
    import onnx

    graph = onnx.load(path).graph
    weights = {t.name for t in graph.initializer}
    return sum(n.op_type == "MatMul" and n.input[1] in weights for n in graph.node)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_an_int8_export_runs_in_plain_onnxruntime_as_the_backend_runs_int8(
    models, tmp_path, capsys, kind
):
    import onnxruntime as ort
    from seq2seq_kit_onnx.export import load as load_export

    graphs = ("encoder.onnx", "decoder_step.onnx")
    out = {}
    for scheme in ("float32", "int8"):
        out[scheme] = tmp_path / scheme
        flags = [] if scheme == "float32" else ["--quantization", "int8"]
        args = ["export", "--model", str(models[kind]), "--format", "onnx"]
        assert main([*args, "--out", str(out[scheme]), *flags]) == 0
    capsys.readouterr()
    meta = json.loads((out["int8"] / "export.json").read_text())
    assert meta["quantization"] == "int8"
    assert json.loads((out["int8"] / "manifest.json").read_text())["quantization"] == "int8"
    assert json.loads((out["float32"] / "export.json").read_text())["quantization"] is None
    for name in graphs:
        ops = _ops(out["int8"] / name)
        # every product with a weight is an integer one; the tables are read as int8 rows
        assert _weight_matmuls(out["int8"] / name) == 0
        assert ops["Cast"] >= 1 and ops["Gather"] > _ops(out["float32"] / name)["Gather"]
        if name == "decoder_step.onnx" or kind == "transformer":
            assert ops["MatMulInteger"] >= 1 and ops["DynamicQuantizeLinear"] >= 1
        if kind == "transformer":  # norms and the softmax stay float
            assert ops["LayerNormalization"] == _ops(out["float32"] / name)["LayerNormalization"]
    if kind == "rnn":  # ONNX Runtime has no integer GRU: the encoder's stays float32
        import onnx

        gru = _ops(out["float32"] / "encoder.onnx")["GRU"]
        assert gru >= 1 and _ops(out["int8"] / "encoder.onnx")["GRU"] == gru
        graph = onnx.load(out["int8"] / "encoder.onnx").graph  # its weights stored as int8
        stored = {t.name: t.data_type for t in graph.initializer}
        for node in (n for n in graph.node if n.op_type == "GRU"):
            for name in node.input[1:3]:
                assert name.endswith(".dequantized")
                assert stored[name.replace(".dequantized", ".int8")] == onnx.TensorProto.INT8

    sessions = _PlainSessions(
        *(
            ort.InferenceSession(str(out["int8"] / n), providers=["CPUExecutionProvider"])
            for n in graphs
        ),
        meta,
    )
    backend = load(models[kind], backend="onnx", quantization="int8")
    ids = [backend.source_vocab.encode(text) for text in INPUTS]
    src, lengths = pad(ids), np.array([len(i) for i in ids], dtype=np.int32)
    vocab = backend.target_vocab
    plain = greedy(sessions, src, lengths, vocab, meta["max_length"])
    expected = greedy(backend.model, src, lengths, vocab, meta["max_length"])
    assert [h.ids for h in plain] == [h.ids for h in expected]
    np.testing.assert_allclose([h.score for h in plain], [h.score for h in expected], atol=1e-5)
    exported = load_export(out["int8"])
    assert exported.model.quantization == "int8"
    assert exported.translator().translate(INPUTS) == backend.translate(INPUTS)
    # translate runs model directories; for an export it names the loader
    assert main(["translate", "--model", str(out["int8"]), "7"]) == 2
    assert "seq2seq_kit_onnx.export.load(" in capsys.readouterr().err
    again = greedy(exported.model, src, lengths, vocab, meta["max_length"])
    assert [h.ids for h in again] == [h.ids for h in plain]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in plain], atol=1e-5)
    # quantized indeed (how close to float32: the conformance suite)
    exact = load(models[kind], backend="onnx").model
    assert [h.score for h in greedy(exact, src, lengths, vocab, 3)] != [
        h.score for h in greedy(backend.model, src, lengths, vocab, 3)
    ]


def test_lookup_tables_are_int8_rows_with_a_scale_each():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from seq2seq_kit_onnx.quantize import int8_tables

    rng = np.random.default_rng(0)
    table = rng.normal(0, 1, (6, 5)).astype(np.float32)
    table[2] *= 100.0  # a large row sets no other row's scale
    table[4] = 0.0
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="lookup")],
        "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["n", 5])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    quantized = int8_tables(model)
    names = {t.name: t.data_type for t in quantized.graph.initializer}
    assert names == {"table.int8": TensorProto.INT8, "table.scale": TensorProto.FLOAT}
    onnx.checker.check_model(quantized)
    run = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([0, 1, 2, 3, 4, 5, 2], dtype=np.int64)
    (rows,) = run.run(None, {"ids": ids})
    step = np.abs(table).max(axis=1, keepdims=True) / 127.0  # one int8 step per row
    assert np.all(np.abs(rows - table[ids]) <= step[ids] / 2 + 1e-6)
    assert np.all(rows[4] == 0.0) and not np.array_equal(rows, table[ids])


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(500, 500, hidden_size=256, embedding_size=64, attention="general"),
        TransformerSpec(
            2000, 2000, d_model=128, ff_size=512, share_embeddings=True, tie_output_embeddings=True
        ),
    ],
    ids=["rnn", "transformer"],
)
def test_int8_graphs_hold_about_a_quarter_of_the_bytes(spec):
    # mid-sized models (about 0.5M and 1.3M weights), where the weights, not the graphs'
    # structure, make the size; the suite's models are too small to show it
    from seq2seq_kit_onnx.model import graphs

    weights = initial_weights(spec, 0)
    size = {
        scheme: sum(len(g.SerializeToString()) for g in graphs(spec, weights, scheme))
        for scheme in (None, "int8")
    }
    assert size["int8"] <= 0.3 * size[None]


@pytest.mark.parametrize("attention", ["bahdanau", "general", "dot"])
def test_an_lstm_encoder_runs_on_integer_kernels(attention):
    from seq2seq_kit_onnx.model import OnnxModel, graphs

    spec = ModelSpec(
        11, 13, hidden_size=8, embedding_size=4, bidirectional=True, attention=attention
    )
    encoder, step = graphs(spec, initial_weights(spec, 0), "int8")
    ops = {node.op_type for node in encoder.graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    # and every attention's step runs (Bahdanau's score vector stays a float product)
    model = OnnxModel(spec, quantization="int8")
    state = model.encode(np.array([[4, 5, 6], [7, 0, 0]], np.int32), np.array([3, 1], np.int32))
    log_probs, _ = model.step(np.array([1, 1], np.int32), state)
    assert log_probs.shape == (2, 13) and np.allclose(np.exp(log_probs).sum(-1), 1, atol=1e-5)


def test_an_export_scheme_other_than_int8_is_refused(models, tmp_path, capsys):
    args = ["export", "--model", str(models["rnn"]), "--format", "onnx", "--out", str(tmp_path)]
    assert main([*args, "--quantization", "int8_float32"]) == 2
    assert "the 'onnx' format has no int8_float32 scheme; it writes int8" in capsys.readouterr().err
    assert (
        main(
            ["translate", "--model", str(models["rnn"]), "--backend", "onnx"]
            + ["--quantization", "float16", "7"]
        )
        == 2
    )
    assert "backend 'onnx' does not run models quantized to float16 (it runs float32, int8)" in (
        capsys.readouterr().err
    )


def test_export_refusals(models, tmp_path, capsys):
    model = str(models["rnn"])
    assert main(["export", "--model", model, "--format", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown export format 'nope'" in err and "onnx" in err
    assert not (tmp_path / "x").exists()

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    for flags in ([], ["--overwrite"]):  # a folder of the user's is never an export to replace
        args = ["export", "--model", model, "--format", "onnx", "--out", str(taken)]
        assert main([*args, *flags]) == 2
        assert "holds no export" in capsys.readouterr().err
        assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]
    exported = tmp_path / "exported"
    args = ["export", "--model", model, "--format", "onnx", "--out", str(exported)]
    assert main(args) == 0
    (exported / "keep.txt").write_text("mine")
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (exported / "keep.txt").read_text() == "mine" and (exported / "encoder.onnx").is_file()
    assert not [p for p in tmp_path.rglob(".*")]  # no staging folder or lock left

    corrupted = tmp_path / "corrupted"
    shutil.copytree(models["rnn"], corrupted)
    weights = corrupted / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    out = tmp_path / "y"
    assert main(["export", "--model", str(corrupted), "--format", "onnx", "--out", str(out)]) == 2
    assert "weights.safetensors" in capsys.readouterr().err
    assert not out.exists()


def test_export_never_replaces_a_directory_holding_the_model(models, tmp_path, capsys):
    # --out above the model with --overwrite would swap the model away with its neighbours
    home = tmp_path / "home"
    shutil.copytree(models["rnn"], home / "models" / "m")
    (home / "notes.txt").write_text("mine")
    for out in (home, home / "models", home / "models" / "m"):
        args = ["export", "--model", str(home / "models" / "m"), "--format", "onnx"]
        assert main([*args, "--out", str(out), "--overwrite"]) == 2
        assert "model directory" in capsys.readouterr().err
    assert (home / "notes.txt").read_text() == "mine"
    assert load(home / "models" / "m", backend="onnx").translate(["7"]) == ["seven"]
    assert main(["export", "--model", str(models["rnn"]), "--format", "onnx", "--out", " "]) == 2
    assert "--out is empty" in capsys.readouterr().err


def test_a_failed_export_leaves_no_directory_behind(models, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    out = tmp_path / "a" / "b" / "out"
    args = ["export", "--model", str(models["rnn"]), "--format", "ctranslate2", "--out", str(out)]
    assert main(args) == 2  # CTranslate2 runs Transformers only
    assert "transformer" in capsys.readouterr().err.lower()
    assert list(tmp_path.iterdir()) == []


def _forge_manifest(out):
    """Make the export's manifest vouch for its files as they are now."""
    from seq2seq_kit.integrity import file_sha256

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = {name: file_sha256(out / name) for name in manifest["files"]}
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_an_onnx_export_is_checked_before_anything_in_it_is_read(models, tmp_path):
    from seq2seq_kit_onnx.export import load as load_export

    from seq2seq_kit.errors import ExportError

    out = tmp_path / "e"
    model = str(models["rnn"])
    export = ["export", "--model", model, "--format", "onnx", "--out", str(out), "--overwrite"]
    assert main(export) == 0
    encoder = out / "encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[:100])  # truncated
    with pytest.raises(ExportError, match=r"encoder.onnx: corrupted or truncated"):
        load_export(out)
    _forge_manifest(out)  # even vouched for, a damaged graph is a clear error
    with pytest.raises(ExportError, match=r"encoder.onnx: not a readable ONNX graph"):
        load_export(out)

    assert main(export) == 0
    meta = json.loads((out / "export.json").read_text())
    meta["target_vocab"]["tokens"].reverse()
    (out / "export.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=r"export.json: corrupted or truncated"):
        load_export(out)
    meta["target_vocab"]["tokens"].pop()
    (out / "export.json").write_text(json.dumps(meta))
    _forge_manifest(out)
    with pytest.raises(ExportError, match=r"export.json: malformed"):
        load_export(out)  # a vocabulary of another size than the graphs'

    assert main(export) == 0
    elsewhere = tmp_path / "other"
    shutil.copytree(out, elsewhere)
    for name in (f"../{elsewhere.name}/encoder.onnx", "/etc/passwd", "manifest.json"):
        meta = json.loads((out / "export.json").read_text())
        meta["encoder"]["file"] = name
        (out / "export.json").write_text(json.dumps(meta))
        _forge_manifest(out)
        with pytest.raises(ExportError, match="is not a graph of this export"):
            load_export(out)

    assert main(export) == 0
    (out / "decoder_step.onnx").unlink()
    (out / "decoder_step.onnx").symlink_to(elsewhere / "decoder_step.onnx")
    with pytest.raises(ExportError, match="decoder_step.onnx: not a plain file"):
        load_export(out)


def test_a_swapped_sentencepiece_model_in_an_export_is_caught(tmp_path):
    from seq2seq_kit_onnx.export import load as load_export

    from seq2seq_kit.errors import ExportError

    models = {}
    for name, size in (("a", 40), ("b", 44)):
        models[name] = tmp_path / name
        config = Config.model_validate(
            {
                "data": {
                    "source": "num2words",
                    "limit": 200,
                    "tokenizer": "sentencepiece",
                    "tokenizer_options": {"vocab_size": size},
                },
                "train": {"epochs": 1, "progress": False},
            }
        )
        train(config, backend="numpy", out=models[name])
        out = tmp_path / f"{name}-onnx"
        assert (
            main(["export", "--model", str(models[name]), "--format", "onnx", "--out", str(out)])
            == 0
        )
    spm = sorted(p.name for p in (tmp_path / "a-onnx").glob("target-*"))
    assert spm
    for name in spm:
        shutil.copy(tmp_path / "b-onnx" / name, tmp_path / "a-onnx" / name)
    with pytest.raises(ExportError, match=rf"{spm[0]}: corrupted or truncated"):
        load_export(tmp_path / "a-onnx")


def test_training_with_onnx_is_refused(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", "--data", "digits", "--backend", "onnx", "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'onnx'" in err and "'train'" in err and "inference only" in err
    assert not out.exists()


def test_resuming_with_onnx_is_refused(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--no-progress"]
    assert main([*args, "--backend", "numpy"]) == 0
    before = (out / "weights.safetensors").read_bytes()
    capsys.readouterr()
    resume = ["train", "--resume", str(out), "--epochs", "4", "--backend", "onnx"]
    assert main(resume) == 2
    assert "'train'" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before


def test_backends_lists_onnx_as_inference_only(capsys):
    assert main(["backends", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    onnx = next(b for b in listing["backends"] if b["name"] == "onnx")
    assert onnx["inference_only"] and "train" not in onnx["capabilities"]
    assert "onnx" in listing["export_formats"]


def test_a_second_exporter_of_one_format_is_reported_and_the_first_kept():
    import types

    from seq2seq_kit import hookimpl
    from seq2seq_kit.plugins import build_registry

    def impostor(checkpoint, out):  # never called
        raise AssertionError

    plugin = types.ModuleType("impostor_exporter")
    plugin.register_exporters = hookimpl(lambda register: register("onnx", impostor))
    reg = build_registry(extra_plugins=(plugin,))
    assert reg.exporters["onnx"] is not impostor
    assert any("'onnx'" in reason and "twice" in reason for reason in reg.failures.values())
