import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from forged import as_version_1

from seq2seq_kit.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from seq2seq_kit.errors import CheckpointError
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.vocab import Vocabulary
from seq2seq_kit.weights import initial_weights


def make(seed=0, hidden=8):
    src, tgt = Vocabulary.build(["123"]), Vocabulary.build(["one", "two"])
    spec = ModelSpec(len(src), len(tgt), hidden_size=hidden)
    return Checkpoint(spec, src, tgt, initial_weights(spec, seed), 12, {"note": "x"})


def assert_same(a, b):
    assert a.spec == b.spec and a.source_vocab == b.source_vocab
    assert a.target_vocab == b.target_vocab and a.max_length == b.max_length
    assert a.weights.keys() == b.weights.keys()
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])


def test_round_trip_and_overwrite(tmp_path):
    path = tmp_path / "m"
    save_checkpoint(make(0), path)
    assert_same(load_checkpoint(path), make(0))
    save_checkpoint(make(1), path)
    assert_same(load_checkpoint(path), make(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers
    doc = json.loads((path / "model.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["meta"] == {"note": "x"}


def test_refuses_to_overwrite_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a model directory"):
        save_checkpoint(make(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_damaged_weights_give_a_clear_error_and_write_nothing(tmp_path, damage):
    path = tmp_path / "m"
    save_checkpoint(make(), path)
    weights = path / "weights.safetensors"
    data = weights.read_bytes()
    if damage == "missing":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    before = sorted((p.name, p.stat().st_size) for p in path.iterdir())
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        load_checkpoint(path)
    assert sorted((p.name, p.stat().st_size) for p in path.iterdir()) == before


def test_newer_format_and_bad_json(tmp_path):
    path = tmp_path / "m"
    save_checkpoint(make(), path)
    doc = json.loads((path / "model.json").read_text())
    doc["format_version"] = FORMAT_VERSION + 1
    (path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_checkpoint(tmp_path / "nothing")


def test_pickle_payload_is_never_executed(tmp_path):
    path = tmp_path / "m"
    save_checkpoint(make(), path)
    marker = tmp_path / "pwned"
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (path / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_killed_mid_save_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "m"
    save_checkpoint(make(0, hidden=64), path)
    writer = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_checkpoint import make
        from seq2seq_kit.checkpoint import save_checkpoint
        print("ready", flush=True)
        seed = 1
        while True:
            save_checkpoint(make(seed % 2, hidden=64), {str(path)!r})
            seed += 1
        """
    )
    rng = np.random.default_rng(0)
    candidates = [make(0, hidden=64), make(1, hidden=64)]
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.01, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = load_checkpoint(path)
        matches = 0
        for cand in candidates:
            try:
                assert_same(loaded, cand)
                matches += 1
            except AssertionError:
                pass
        assert matches == 1


def test_a_transformer_round_trips_with_its_spec(tmp_path):
    from seq2seq_kit.spec import TransformerSpec

    src = tgt = Vocabulary.build(["123", "one two"])
    spec = TransformerSpec(
        len(src), len(tgt), 1, 2, 8, 2, 16, 0.0, 0.1, "gelu", "post", "learned", 20, True, True
    )
    path = tmp_path / "t"
    save_checkpoint(Checkpoint(spec, src, tgt, initial_weights(spec, 3), 19), path)
    loaded = load_checkpoint(path)
    assert_same(loaded, Checkpoint(spec, src, tgt, initial_weights(spec, 3), 19))
    assert isinstance(loaded.spec, TransformerSpec)
    doc = json.loads((path / "model.json").read_text())
    assert doc["spec"] == {"architecture": "transformer", **dataclasses.asdict(spec)}


def test_a_model_json_from_before_the_architecture_choice_loads_as_an_rnn(tmp_path, capsys):
    from seq2seq_kit.cli import main

    path = tmp_path / "old"
    save_checkpoint(make(hidden=6), path)
    doc = json.loads((path / "model.json").read_text())
    # the spec exactly as such files hold it: no architecture key
    doc["spec"] = {
        "src_vocab_size": doc["spec"]["src_vocab_size"],
        "tgt_vocab_size": doc["spec"]["tgt_vocab_size"],
        "hidden_size": 6,
        "embedding_size": 0,
        "num_layers": 1,
        "cell": "lstm",
        "bidirectional": False,
        "attention": "none",
        "dropout": 0.0,
    }
    (path / "model.json").write_text(json.dumps(as_version_1(doc)))
    assert_same(load_checkpoint(path), make(hidden=6))
    assert main(["info", "--model", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "rnn" and info["spec"]["hidden_size"] == 6
    assert info["source_vocab_size"] == len(Vocabulary.build(["123"]))


def test_an_unknown_architecture_in_model_json_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "m"
    save_checkpoint(make(), path)
    doc = json.loads((path / "model.json").read_text())
    doc["spec"]["architecture"] = "cnn"
    (path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unknown model architecture 'cnn'"):
        load_checkpoint(path)
