"""The example non-backend plugins (plugins/seq2seq-kit-trainlog, -plots) through the
training-event hooks."""

import csv
import json
import sys
from pathlib import Path

import pytest

from seq2seq_kit.config import Config
from seq2seq_kit.plugins import build_registry

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture
def event_plugins(monkeypatch):
    for name in ("seq2seq-kit-trainlog", "seq2seq-kit-plots"):
        monkeypatch.syspath_prepend(str(PLUGINS / name))
    import seq2seq_kit_plots
    import seq2seq_kit_trainlog

    registry = build_registry(extra_plugins=(seq2seq_kit_trainlog, seq2seq_kit_plots))
    monkeypatch.setattr("seq2seq_kit.api.registry", lambda: registry)
    yield
    for name in ("seq2seq_kit_trainlog", "seq2seq_kit_plots"):
        sys.modules.pop(name, None)


def test_training_log_and_curves(tmp_path, event_plugins):
    pytest.importorskip("matplotlib")
    import seq2seq_kit

    config = Config()
    config.train.epochs, config.train.progress = 4, False
    seq2seq_kit.train(config, out=tmp_path / "model")
    rows = list(csv.DictReader((tmp_path / "model.log.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    lines = [json.loads(x) for x in (tmp_path / "model.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert float(rows[0]["train_loss"]) == pytest.approx(lines[0]["train_loss"])
    png = (tmp_path / "model" / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # a resumed run appends to the log
    seq2seq_kit.train(resume=tmp_path / "model", epochs=6)
    log = (tmp_path / "model.log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in log] == list(range(1, 7))
