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


def installed_metadata(site: Path, dist: str, module: str) -> None:
    """The .dist-info an install of ``dist`` leaves (an editable install leaves an
    .egg-info in the plugin's folder instead): its entry point then finds ``module`` too."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[seq2seq_kit]\n{dist.split('-')[-1]} = {module}\n")


@pytest.fixture(params=["extra plugins", "installed too"])
def event_plugins(request, monkeypatch, tmp_path_factory):
    for name in ("seq2seq-kit-trainlog", "seq2seq-kit-plots"):
        monkeypatch.syspath_prepend(str(PLUGINS / name))
    if request.param == "installed too":
        site = tmp_path_factory.mktemp("site")
        installed_metadata(site, "seq2seq-kit-trainlog", "seq2seq_kit_trainlog")
        installed_metadata(site, "seq2seq-kit-plots", "seq2seq_kit_plots")
        monkeypatch.syspath_prepend(str(site))
    import seq2seq_kit_plots
    import seq2seq_kit_trainlog

    registry = build_registry(extra_plugins=(seq2seq_kit_trainlog, seq2seq_kit_plots))
    # every lookup, the process-wide one included, sees this registry only: none built
    # while the plugin folders are on sys.path outlives the test
    monkeypatch.setattr("seq2seq_kit.training.registry", lambda: registry)
    monkeypatch.setattr("seq2seq_kit.plugins.registry", lambda: registry)
    yield registry
    for name in ("seq2seq_kit_trainlog", "seq2seq_kit_plots"):
        sys.modules.pop(name, None)


def test_training_log_and_curves(tmp_path, event_plugins):
    pytest.importorskip("matplotlib")
    import seq2seq_kit

    registered = {getattr(p, "__name__", "") for p in event_plugins.manager.get_plugins()}
    assert {"seq2seq_kit_trainlog", "seq2seq_kit_plots"} <= registered, event_plugins.failures

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


def test_update_lines_are_logged_appended_on_resume_and_restarted(tmp_path, event_plugins):
    import seq2seq_kit

    config = Config()
    config.train.epochs, config.train.progress, config.train.log_every = 2, False, 2
    seq2seq_kit.train(config, out=tmp_path / "model")  # digits: 5 updates an epoch

    def logged():
        text = (tmp_path / "model.log.updates.jsonl").read_text()
        return [(r["update"], r["epoch"]) for r in map(json.loads, text.splitlines())]

    assert logged() == [(2, 1), (4, 1), (6, 2), (8, 2), (10, 2)]
    seq2seq_kit.train(resume=tmp_path / "model", epochs=3)
    assert logged()[5:] == [(12, 3), (14, 3)]
    config.train.overwrite, config.train.epochs = True, 1
    seq2seq_kit.train(config, out=tmp_path / "model")  # a new run starts a new log
    assert logged() == [(2, 1), (4, 1)]


def png_width(path: Path) -> int:
    """The width in pixels a PNG file's header gives."""
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_decoded_scores_are_logged_and_drawn(tmp_path, event_plugins):
    pytest.importorskip("matplotlib")
    import seq2seq_kit

    config = Config()
    config.train.epochs, config.train.progress = 3, False
    seq2seq_kit.train(config, out=tmp_path / "plain")
    config.train.valid_metrics = ["chrf", "ter", "exact_match"]
    seq2seq_kit.train(config, out=tmp_path / "decoded")
    history = json.loads((tmp_path / "decoded" / "model.json").read_text())["meta"]["history"]
    rows = list(csv.DictReader((tmp_path / "decoded.log.csv").read_text().splitlines()))
    assert list(rows[0])[2:7] == [
        "valid_loss",
        "valid_accuracy",
        "valid_chrf",
        "valid_ter",
        "valid_exact_match",
    ]
    for row, record in zip(rows, history, strict=True):
        for key in ("valid_chrf", "valid_ter", "valid_exact_match"):
            assert float(row[key]) == pytest.approx(record[key])
    lines = [json.loads(x) for x in (tmp_path / "decoded.log.jsonl").read_text().splitlines()]
    assert [r["valid_chrf"] for r in lines] == [r["valid_chrf"] for r in history]
    # two more panels beside loss and accuracy: chrF and TER (0..100), exact match (0..1)
    plain, decoded = (png_width(tmp_path / d / "curves.png") for d in ("plain", "decoded"))
    assert decoded == 2 * plain


def test_the_curves_drawn_at_train_end_are_the_plot_command_s(tmp_path, event_plugins):
    """Validations within epochs (valid_every) reach the plugin: curves.png by update, as
    ``seq2seq-kit plot`` draws it from model.json."""
    pytest.importorskip("matplotlib")
    import seq2seq_kit
    from seq2seq_kit.cli import main

    config = Config()
    config.train.epochs, config.train.progress, config.train.valid_every = 3, False, 2
    seq2seq_kit.train(config, out=tmp_path / "model")
    assert main(["plot", "--model", str(tmp_path / "model"), "--out-dir", str(tmp_path)]) == 0
    drawn = (tmp_path / "model" / "curves.png").read_bytes()
    assert drawn == (tmp_path / "curves.png").read_bytes()
    config.train.valid_every = 0  # by epoch: another figure
    seq2seq_kit.train(config, out=tmp_path / "epochs")
    assert (tmp_path / "epochs" / "curves.png").read_bytes() != drawn
