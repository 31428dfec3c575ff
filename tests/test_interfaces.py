"""An error that advises an option words it for the interface that raised it: Python
arguments (``resume='DIR'``, ``overwrite=True``) when called from Python, flags
(``--resume DIR``, ``--overwrite``) when run as a command."""

import pytest

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.corpus import preprocess
from seq2seq_kit.errors import CheckpointError, ConfigError, UnknownTokenError


def quick(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


def test_overwrite_replaces_an_existing_model(tmp_path):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    seq2seq_kit.train(quick(3), out=out, overwrite=True)
    assert len(load_checkpoint(out).meta["history"]) == 3


def test_overwrite_false_overrides_the_config(tmp_path):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    config = quick(3)
    config.train.overwrite = True
    with pytest.raises(CheckpointError, match="already holds a model"):
        seq2seq_kit.train(config, out=out, overwrite=False)


def test_an_existing_model_names_the_api_arguments(tmp_path, capsys):
    out = (tmp_path / "m").resolve()
    seq2seq_kit.train(quick(), out=out)
    before = (out / "model.json").read_text()
    with pytest.raises(CheckpointError) as caught:
        seq2seq_kit.train(quick(3), out=out)
    message = str(caught.value)
    assert f"continue its training with resume={str(out)!r}" in message
    assert "replace it with overwrite=True" in message
    assert "--resume" not in message and "--overwrite" not in message
    assert (out / "model.json").read_text() == before
    # the command line names its flags
    assert main(["train", "--out", str(out), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {out}," in err and "--overwrite" in err and "resume=" not in err


def test_an_existing_corpus_names_the_api_arguments(tmp_path, capsys):
    config = quick()
    config.data.source = "digits"
    out = (tmp_path / "c").resolve()
    preprocess(config, out)
    with pytest.raises(ConfigError) as caught:
        preprocess(config, out)
    message = str(caught.value)
    assert message.startswith(f"out={str(out)!r}: already holds a corpus")
    assert "replace it with overwrite=True" in message
    assert "--overwrite" not in message and "--out" not in message
    assert main(["preprocess", "--data", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: already holds a corpus; replace it with --overwrite" in err


def test_a_resume_with_nothing_to_train_names_the_api_arguments(tmp_path, capsys):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(), out=out)
    with pytest.raises(ConfigError) as caught:
        seq2seq_kit.train(resume=out, epochs=2)
    message = str(caught.value)
    assert message.startswith(f"resume={str(out)!r}: the saved run has done 2 epochs")
    assert "(epochs=N with N > 2)" in message and "--" not in message
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {out}: the saved run" in err and "(--epochs N with N > 2)" in err


def test_an_unknown_token_names_the_api_argument(tmp_path, capsys):
    out = tmp_path / "m"
    translator = seq2seq_kit.train(quick(), out=out)
    with pytest.raises(UnknownTokenError) as caught:
        translator.translate(["7x"])
    assert "pass unknown='replace' to map it to <unk>" in str(caught.value)
    assert "--unknown" not in str(caught.value)
    assert main(["translate", "--model", str(out), "7x"]) == 2
    err = capsys.readouterr().err
    assert "pass --unknown replace to map it" in err and "unknown='replace'" not in err


def test_option_spells_arguments_and_config_keys_for_each_interface(tmp_path):
    from seq2seq_kit.errors import flags, option

    assert option("overwrite") == "overwrite=True"
    assert option("resume", tmp_path) == f"resume={str(tmp_path)!r}"
    assert option("epochs", metavar="N") == "epochs=N"
    assert option("train.max_updates", metavar="N") == "train.max_updates = N"
    assert option("train.patience", None) == "train.patience"
    with pytest.raises(RuntimeError), flags(lambda name: "--" + name.split(".")[-1]):
        assert option("overwrite") == "--overwrite"
        assert option("resume", tmp_path) == f"--resume {tmp_path}"
        assert option("train.patience", None) == "--patience"
        assert option("train.max_updates", metavar="N") == "--max_updates N"
        raise RuntimeError
    assert option("overwrite") == "overwrite=True"  # the command's spelling ends with it
