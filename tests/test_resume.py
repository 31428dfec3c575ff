"""A resumed run never silently changes what is being trained."""

import json
import subprocess
import sys

import pytest

import seq2seq_kit
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import ConfigError, DataError


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args], capture_output=True, text=True, cwd=cwd
    )


def small(epochs: int) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    config.data.valid_fraction = 0.3
    config.data.source = "num2words"
    config.data.options = {"count": 40}
    return config


@pytest.fixture
def saved(tmp_path):
    out = tmp_path / "run"
    seq2seq_kit.train(small(3), out=out)
    return out


@pytest.mark.parametrize(
    "args, key",
    [
        (["--data", "OTHER"], "data.source"),
        (["--seed", "7"], "train.seed"),
        (["--limit", "10"], "data.limit"),
        (["--valid-fraction", "0.5"], "data.valid_fraction"),
        (["--batch-size", "4"], "train.batch_size"),
        (["--hidden-size", "64"], "model.hidden_size"),
        (["--cell", "gru"], "model.cell"),
        (["--tokenizer", "word"], "data.tokenizer"),
        (["--max-target-length", "3"], "data.max_target_length"),
        (["--freeze", "output"], "train.freeze"),
    ],
)
def test_conflicting_setting_is_refused_naming_key_and_both_values(saved, args, key, capsys):
    other = saved.parent / "other.tsv"
    other.write_text("1\tone\n2\ttwo\n")
    args = [str(other) if a == "OTHER" else a for a in args]
    before = (saved / "model.json").read_text()
    assert main(["train", "--resume", str(saved), "--epochs", "5", *args]) == 2
    err = capsys.readouterr().err
    assert f"{key} is " in err and "in the saved run but" in err
    assert (saved / "model.json").read_text() == before


def test_other_data_file_is_refused(tmp_path, capsys):
    data = tmp_path / "a.tsv"
    data.write_text("".join(f"{i}\t{'x' * (i % 5 + 1)}\n" for i in range(30)))
    other = tmp_path / "other.tsv"
    other.write_text("q\tQ\nr\tR\n")
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--epochs", "2", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--data", str(other), "--epochs", "4"]) == 2
    assert "data.source is" in capsys.readouterr().err
    # the same pairs moved to another file are the same data
    moved = tmp_path / "moved.tsv"
    moved.write_text(data.read_text())
    resumed = seq2seq_kit.train(resume=out, data=str(moved), epochs=3)
    assert resumed.meta["resumes"][-1]["changed"]["data.source"][1] == str(moved)
    # the same file, changed on disk since, is refused
    moved.write_text(data.read_text().replace("\t", "\tz", 1))
    with pytest.raises(DataError, match="differ from the saved run"):
        seq2seq_kit.train(resume=out, epochs=4)


def test_same_file_by_another_path_or_folder_is_accepted(tmp_path):
    data = tmp_path / "a.tsv"
    data.write_text("".join(f"{i}\t{'x' * (i % 5 + 1)}\n" for i in range(30)))
    out = tmp_path / "m"
    res = run("train", "--data", "a.tsv", "--epochs", "2", "--out", "m", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    res = run("train", "--resume", str(out), "--data", "../a.tsv", "--epochs", "3", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    res = run("train", "--resume", str(out), "--epochs", "4", cwd=elsewhere)
    assert res.returncode == 0, res.stderr


def test_resumable_settings_are_applied_and_recorded(saved):
    resumed = seq2seq_kit.train(
        resume=saved,
        config=Config.model_validate(
            {"train": {"learning_rate": 5e-4, "patience": 2, "epochs": 5, "progress": False}}
        ),
    )
    history = resumed.history
    assert [r["learning_rate"] for r in history] == [1e-3] * 3 + [5e-4] * 2
    assert history[3]["resumed_with"]["train.learning_rate"] == [1e-3, 5e-4]
    meta = json.loads((saved / "model.json").read_text())["meta"]
    (record,) = meta["resumes"]
    assert record["after_epoch"] == 3
    assert record["changed"] == {
        "train.learning_rate": [1e-3, 5e-4],
        "train.patience": [0, 2],
        "train.epochs": [3, 5],
    }
    assert meta["config"]["train"]["patience"] == 2


def test_epochs_at_or_below_those_done_says_so(saved):
    for epochs in (2, 3):
        with pytest.raises(ConfigError, match="has done 3 epochs and train.epochs is"):
            seq2seq_kit.train(resume=saved, epochs=epochs)


def test_a_config_file_agreeing_with_the_saved_run_is_accepted(saved, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = 4\nseed = 0\n[model]\nhidden_size = 32\n")
    assert main(["train", "--resume", str(saved), "--config", str(cfg), "--no-progress"]) == 0
    cfg.write_text("[train]\nepochs = 5\n[model]\nnum_layers = 2\n")
    assert main(["train", "--resume", str(saved), "--config", str(cfg)]) == 2
