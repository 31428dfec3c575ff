"""Runs that would train on nothing, on absurdly long pairs, or decode broken weights stop
with an error instead."""

import json

import numpy as np
import pytest
from forged import forge
from safetensors.numpy import load_file, save_file

import seq2seq_kit
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import DataError


@pytest.fixture
def no_training(monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr("seq2seq_kit.backend.Backend.create", build)


def test_zero_training_pairs_after_the_split_is_an_error(tmp_path, no_training, capsys):
    data = tmp_path / "two.tsv"
    data.write_text("1\tone\n2\ttwo\n")
    out = tmp_path / "m"
    args = ["train", "--data", str(data), "--valid-fraction", "0.75", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "two.tsv: no training pairs" in err and "valid_fraction 0.75" in err
    assert not out.exists()


def test_zero_training_pairs_after_the_length_filter_is_an_error(no_training):
    config = Config()
    config.data.max_source_length = 1
    config.data.source = "num2words"
    config.data.options = {"count": 30, "low": 10, "high": 99}
    with pytest.raises(
        DataError, match="no training pairs of 30: all 27 are longer than data.max_source_length"
    ):
        seq2seq_kit.train(config)


def test_long_pairs_are_skipped_counted_and_do_not_set_the_decoding_cap(tmp_path):
    data = tmp_path / "long.tsv"
    rows = [f"{d}\t{w}" for d, w in zip("123456789", "abcdefghi", strict=True)]
    rows.insert(4, "5\t" + "x" * 20_000)
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m"
    args = ["--data", str(data), "--epochs", "2", "--valid-fraction", "0", "--no-progress"]
    assert main(["train", *args, "--max-target-length", "50", "--out", str(out)]) == 0
    doc = json.loads((out / "model.json").read_text())
    assert doc["meta"]["skipped_too_long"] == 1 and doc["meta"]["train_pairs"] == 9
    assert doc["max_length"] < 100
    assert main(["train", *args, "--out", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "model.json").read_text())["max_length"] == 40_000


def test_non_finite_weights_are_a_clear_error_when_decoding(tmp_path, capsys):
    config = Config()
    config.train.epochs, config.train.progress = 2, False
    out = tmp_path / "m"
    seq2seq_kit.train(config, out=out)
    # a file damaged the way a diverged run of an older version saved it, checksum updated
    weights = load_file(out / "weights.safetensors")
    name = sorted(weights)[1]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, out / "weights.safetensors")
    doc = json.loads((out / "model.json").read_text())
    import hashlib

    digest = hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
    doc["weights"]["sha256"] = digest
    forge(out / "model.json", doc)
    for beam in ("1", "3"):
        assert main(["translate", "--model", str(out), "--beam", beam, "3"]) == 2
        err = capsys.readouterr().err
        assert f"['{name}'] hold NaN or infinite values" in err and "Traceback" not in err
