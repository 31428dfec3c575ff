"""Odd values and situations beyond the obvious ones: each ends in a clear exit 2 (or does
what was asked), never a traceback, a clobbered file or a run thrown away at save time."""

import os
import subprocess
import sys

import pytest
from forged import forge

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config, load_config
from seq2seq_kit.errors import CheckpointError, ConfigError, DataError


def quick(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("odd") / "digits"
    seq2seq_kit.train(quick(300), out=out)
    return out


def test_overwrite_and_saves_keep_files_the_run_did_not_write(tmp_path):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    (out / "NOTES.txt").write_text("mine\n")
    (out / "data.tsv").write_text("1\tone\n2\ttwo\n3\tthree\n")
    (out / "plots").mkdir()
    (out / "plots" / "curves.png").write_bytes(b"png")
    args = ["train", "--out", str(out), "--overwrite", "--data", str(out / "data.tsv")]
    assert main([*args, "--epochs", "3", "--valid-fraction", "0", "--no-progress"]) == 0
    seq2seq_kit.train(resume=out, epochs=4)
    assert (out / "NOTES.txt").read_text() == "mine\n"
    assert (out / "data.tsv").exists() and (out / "plots" / "curves.png").read_bytes() == b"png"
    assert len(load_checkpoint(out).meta["history"]) == 4


def test_a_symlinked_output_writes_its_target_and_shares_its_lock(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    config = quick(3)
    config.train.save_seconds = 0  # several saves: each swaps the target, never the link
    seq2seq_kit.train(config, out=tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "model.json").exists()
    seq2seq_kit.train(resume=tmp_path / "link", epochs=4)
    assert len(load_checkpoint(tmp_path / "real").meta["history"]) == 4


def test_the_working_directory_as_output(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", "--out", ".", "--epochs", "2", "--no-progress"]) == 0
    assert (tmp_path / "here" / "model.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "99999999999999999999"], "argument --seed"),
        (["--config", "a.toml", "--config", "b.toml"], "--config: given more than once"),
        (["--epochs", "3", "--epochs", "4"], "--epochs: given more than once"),
    ],
)
def test_values_refused_before_anything_runs(tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "m"), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_validation_file_and_fraction_exclude_each_other(tmp_path, capsys):
    data = tmp_path / "v.tsv"
    data.write_text("1\tone\n")
    code = main(
        ["train", "--out", str(tmp_path / "n"), "--valid", str(data), "--valid-fraction", "0.3"]
    )
    assert code == 2 and "exclude each other" in capsys.readouterr().err


def test_strict_types_in_a_config_file(tmp_path):
    f = tmp_path / "c.toml"
    for text in (
        "[train]\nepochs = true\n",
        "[model]\nbidirectional = 1\n",
        '[train]\nseed = "5"\n',
    ):
        f.write_text(text)
        with pytest.raises(ConfigError):
            load_config(f)
    f.write_text("[train]\nlearning_rate = 1\n")  # an integer is a fine float
    assert load_config(f).train.learning_rate == 1.0


def test_a_folder_as_config_and_a_dataset_name_beside_a_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)
    (tmp_path / "num2words").write_text("1\tone\n")
    (tmp_path / "c.toml").write_text('[data]\nsource = "num2words"\n')
    assert load_config(tmp_path / "c.toml").data.source == "num2words"  # as --data does


def test_bad_dataset_options_are_a_data_error():
    config = quick()
    config.data.source, config.data.options = "num2words", {"low": 5, "high": 5}
    with pytest.raises(DataError, match="dataset 'num2words' with options"):
        seq2seq_kit.train(config)


@pytest.mark.parametrize(
    "pairs, message",
    [
        ([("", "")], "pair 1 has an empty source"),
        ([("1", "one"), (" ", "x")], "pair 2 has an empty source"),
        ([("a",)], "pair 1 is not"),
        ([("a", "b", "c")], "pair 1 is not"),
        ({"a": "b"}, "got a dict"),
        ([], "no pairs given"),
    ],
)
def test_pairs_from_python_follow_the_row_rules(pairs, message):
    with pytest.raises(DataError, match=message):
        seq2seq_kit.train(quick(), data=pairs)


def test_python_keywords_out_of_range_are_config_errors(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("1\tone\n2\ttwo\n")
    with pytest.raises(ConfigError, match="epochs"):
        seq2seq_kit.train(epochs=0)
    translator = seq2seq_kit.train(quick(), data=data)  # a path object reads the file
    assert translator.meta["data"] == "d.tsv"


def test_a_damaged_run_cannot_resume_but_says_why(tmp_path):
    import json

    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    doc = json.loads((out / "model.json").read_text())
    del doc["meta"]["trainer"]
    doc["meta"]["config"]["train"]["learning_rate"] = None
    forge(out / "model.json", doc)
    with pytest.raises(CheckpointError, match="cannot resume: meta.trainer.epoch is missing"):
        seq2seq_kit.train(resume=out, epochs=4)


def test_evaluate_on_a_registered_dataset_names_the_pair(model_dir, capsys):
    code = main(["evaluate", "--model", str(model_dir), "--data", "num2words", "--limit", "5"])
    assert code == 2 and "num2words-en:4: source character 2: '0'" in capsys.readouterr().err


def test_plot_checks_everything_before_writing(model_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["plot", "--model", str(model_dir), "--out-dir", str(afile)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["plot", "--model", str(model_dir), "--out-dir", ""]) == 2


def test_a_best_validation_without_its_epoch_is_named_not_a_key_error(model_dir, tmp_path):
    # a hand-edited meta.validations: the plot by epochs marks the best validation there
    pytest.importorskip("matplotlib")
    from seq2seq_kit.errors import Seq2SeqError
    from seq2seq_kit.plots import history_figure

    history = [{"epoch": 1, "updates": 5, "train_loss": 1.0}]
    validation = {"update": 5, "valid_loss": 1.0, "valid_accuracy": 0.5, "best": True}
    with pytest.raises(Seq2SeqError, match=r"validations\[0\]: the best validation's epoch"):
        history_figure(history, [validation])


def test_invalid_utf8_arguments_are_refused(model_dir):
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "translate", "--model", str(model_dir)]
        + ["--unknown", "replace", os.fsdecode(b"1\xff")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "TEXT argument 1 is not valid UTF-8" in res.stderr


def test_ctrl_c_outside_training_steps_is_exit_130_without_traceback(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("seq2seq_kit.text_data.load_dataset", interrupted)
    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "m")]) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT" in err and "Traceback" not in err


def test_sizes_too_large_for_memory_are_exit_2(model_dir, monkeypatch, capsys):
    def huge(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB")

    monkeypatch.setattr("seq2seq_kit.decoding.greedy", huge)
    assert main(["translate", "--model", str(model_dir), "--max-length", "999999", "3"]) == 2
    err = capsys.readouterr().err
    assert "out of memory (MemoryError: Unable to allocate 7.28 TiB)" in err
    assert "decode.max_length = 999999" in err


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(meta=[]),
        lambda d: d.update(max_length="abc"),
        lambda d: d.update(max_length=None),
        lambda d: d.update(source_vocab=[]),
        lambda d: d["weights"].update(file="../elsewhere/weights.safetensors"),
        lambda d: d.update(extra=[]),
        lambda d: d["extra"].update(last={"sha256": "x"}),
        lambda d: d["extra"]["optimizer"].update(scalars=["nope"]),
        lambda d: d["meta"].update(history=["a", "b"]),
        lambda d: d["meta"]["trainer"].pop("rng"),
        lambda d: d["meta"]["trainer"].update(learning_rate="fast"),
        lambda d: d["meta"]["trainer"].update(epoch=True),
        lambda d: d["meta"].update(resumes=5),
        lambda d: d["meta"].update(seconds="abc"),
    ],
)
def test_a_damaged_model_json_is_a_clear_error(tmp_path, edit, capsys):
    import json

    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    doc = json.loads((out / "model.json").read_text())
    edit(doc)
    (out / "model.json").write_text(json.dumps(doc))
    for args in (
        ["train", "--resume", str(out), "--epochs", "4"],
        ["translate", "--model", str(out), "1"],
    ):
        code = main(args)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert code in (0, 2) and (code == 0 or "model.json" in err), (args, err)
    assert main(["train", "--resume", str(out), "--epochs", "4"]) == 2


def test_files_that_appear_during_training_and_user_tensors_are_kept(tmp_path, monkeypatch):
    import seq2seq_kit.training as api

    out = tmp_path / "m"
    fit = api.fit

    def fit_with_a_visitor(*args, **kwargs):
        (out / "notes.txt").write_text("written while training\n")
        return fit(*args, **kwargs)

    monkeypatch.setattr(api, "fit", fit_with_a_visitor)
    out.mkdir()
    seq2seq_kit.train(quick(), out=out)
    assert (out / "notes.txt").exists() and (out / "model.json").exists()
    monkeypatch.undo()
    (out / "embeddings.safetensors").write_bytes(b"mine")
    (out / "logs").mkdir()
    (out / "logs" / "run.log").write_text("x")
    inode = (out / "logs" / "run.log").stat().st_ino
    seq2seq_kit.train(resume=out, epochs=3)
    assert (out / "embeddings.safetensors").read_bytes() == b"mine"
    assert (out / "logs" / "run.log").stat().st_ino == inode  # the same file, not a copy


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bidirectional", "--no-bidirectional"], "given more than once"),
        (["--hidden-size", "99999999999"], "argument --hidden-size"),
        (["--num-layers", "100000"], "argument --num-layers"),
        (["--source-tokenizer", ""], "argument --source-tokenizer"),
    ],
)
def test_more_values_refused_before_anything_runs(tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "m"), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_empty_and_looping_output_paths(tmp_path, capsys):
    assert main(["train", "--out", ""]) == 2
    assert "--out: empty path" in capsys.readouterr().err
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert main(["train", "--out", str(tmp_path / "a")]) == 2
    assert "cannot find the directory" in capsys.readouterr().err


def test_python_api_type_errors_name_the_item(model_dir):
    translator = seq2seq_kit.load(model_dir)
    with pytest.raises(TypeError, match=r"texts\[1\] is a NoneType"):
        translator.translate(["1", None])
    assert translator.translate(c for c in "12") == ["one", "two"]
    with pytest.raises(DataError, match="got a int"):
        seq2seq_kit.train(quick(), data=5)
    with pytest.raises(DataError, match="lone surrogate"):
        seq2seq_kit.train(quick(), data=[("\udcff", "c")])
