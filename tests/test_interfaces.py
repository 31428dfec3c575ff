"""An error that advises an option words it for the interface that raised it: Python
arguments (``resume='DIR'``, ``overwrite=True``) when called from Python, flags
(``--resume DIR``, ``--overwrite``) when run as a command."""

import pytest

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.config import Config
from seq2seq_kit.errors import CheckpointError


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
