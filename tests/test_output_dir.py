"""The output directory is checked before training and protected while it is written."""

import errno
import subprocess
import sys

import pytest

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint, writer_lock
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import CheckpointError


def quick(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: the checks must come before any work."""

    def fit(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("seq2seq_kit.training.fit", fit)


def test_an_existing_file_is_refused_before_training(tmp_path, no_training, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    assert main(["train", "--out", str(notes)]) == 2
    assert "notes.txt: exists and is not a model directory" in capsys.readouterr().err
    assert notes.read_text() == "keep me\n"


def test_a_folder_of_other_files_is_refused_before_training(tmp_path, no_training, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    assert main(["train", "--out", str(tmp_path / "mine")]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_an_unwritable_place_is_refused_before_training(no_training, capsys):
    # /proc refuses new entries even to root, unlike a chmod-ed folder
    assert main(["train", "--out", "/proc/seq2seq-kit-test/model"]) == 2
    assert "/proc/seq2seq-kit-test/model: cannot write there" in capsys.readouterr().err


def test_an_existing_model_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    before = (out / "model.json").read_text()
    assert main(["train", "--out", str(out), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "already holds a model" in err and "--resume" in err and "--overwrite" in err
    assert (out / "model.json").read_text() == before
    assert main(["train", "--out", str(out), "--epochs", "3", "--overwrite", "--no-progress"]) == 0
    assert len(load_checkpoint(out).meta["history"]) == 3


def test_a_second_writer_is_refused_at_start_naming_the_directory(tmp_path):
    out = tmp_path / "m"
    with writer_lock(out):  # as a training in progress holds it
        res = subprocess.run(
            [sys.executable, "-m", "seq2seq_kit", "train", "--out", str(out), "--epochs", "2"],
            capture_output=True,
            text=True,
        )
    assert res.returncode == 2, res.stderr
    assert f"{out}: another seq2seq-kit command is writing this directory" in res.stderr
    assert "Traceback" not in res.stderr
    seq2seq_kit.train(quick(), out=out)  # released: the next writer proceeds
    assert load_checkpoint(out).meta["history"]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), None])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error):
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    before = load_checkpoint(out)

    def full(*args, **kwargs):
        raise error or SafetensorError("Error while serializing: IoError(No space left)")

    monkeypatch.setattr("safetensors.numpy.save_file", full)
    with pytest.raises(CheckpointError, match=rf"{out}: writing the model directory failed"):
        seq2seq_kit.train(resume=out, epochs=4)
    monkeypatch.setattr("safetensors.numpy.save_file", save_file)
    after = load_checkpoint(out)
    assert after.meta["history"] == before.meta["history"]
    assert not list(tmp_path.glob(".m.tmp-*"))


def test_nan_weights_are_never_saved(tmp_path):
    import numpy as np

    out = tmp_path / "m"
    translator = seq2seq_kit.train(quick(), out=out)
    weights = translator.model.get_weights()
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    translator.model.set_weights(weights)
    with pytest.raises(CheckpointError, match=rf"NaN or infinite values in \['{name}'\]"):
        translator.save(out)
    assert load_checkpoint(out).meta["history"]
