"""The run record is model.json's meta object: a trained model's reads back into the same
JSON, keys in the same order (the field digests cover it), and a record saved by an
earlier version, missing keys, reads with their defaults."""

from __future__ import annotations

import json

import pytest

import seq2seq_kit
from seq2seq_kit.config import Config
from seq2seq_kit.run_record import RunRecord


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    cfg = Config()
    cfg.train.epochs = 1
    cfg.data.limit = 40
    cfg.model.hidden_size = cfg.model.embedding_size = 8
    out = tmp_path_factory.mktemp("run") / "m"
    seq2seq_kit.train(cfg, out=out)
    seq2seq_kit.train(resume=out, epochs=2)
    return json.loads((out / "model.json").read_text(encoding="utf-8"))["meta"]


def test_a_saved_record_reads_back_into_the_same_json(meta):
    record = RunRecord.from_dict(meta)
    assert json.dumps(record.to_dict()) == json.dumps(meta)
    assert record.backend == "numpy" and record.data == "digits"
    assert record.updates == meta["trainer"]["updates"] and record.stopped == "epochs"
    assert [entry["after_epoch"] for entry in record.resumes] == [1]
    assert record.corpus is None and record.others == {}


def test_further_keys_keep_their_place_after_the_data_digest():
    meta = {
        "seq2seq_kit_version": "0.1.0",
        "backend": "numpy",
        "backend_version": "0.1.0",
        "data": "/c",
        "data_sha256": "ab",
        "corpus": {"path": "/c", "sha256": "ab"},
        "train_pairs": 2,
        "valid_pairs": 1,
        "skipped_too_long": 0,
        "config": {},
        "seconds": 1.5,
        "distributed": RunRecord.distributed_entry("none", 1, 32),
        "history": [],
        "validations": [],
        "trainer": {"epoch": 1},
    }
    record = RunRecord.from_dict(meta)
    assert record.corpus == {"path": "/c", "sha256": "ab"}
    assert list(record.to_dict()) == list(meta) and record.to_dict() == meta


def test_missing_keys_take_their_defaults():
    record = RunRecord.from_dict({"note": "x"})
    assert record.backend is None and record.seconds is None and record.history is None
    assert record.resumes == [] and record.updates is None and record.stopped is None
    assert record.others == {"note": "x"}
    assert "resumes" not in record.to_dict() and "history" not in record.to_dict()


def test_a_damaged_trainer_entry_reads_as_no_state():
    record = RunRecord.from_dict({"trainer": ["not", "an", "object"]})
    assert record.trainer_state == {} and record.updates is None
