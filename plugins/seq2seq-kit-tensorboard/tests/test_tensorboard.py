"""The TensorBoard plugin, installed: tiny NumPy runs write event files that TensorBoard's
own reader parses and that hold the figures the training hooks gave, at their updates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from seq2seq_kit_tensorboard.events import last_step, summary_writer
from seq2seq_kit_tensorboard.runs import ENV, choose_run
from seq2seq_kit_tensorboard.tags import POSITION, step_of, validation_scalars
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import seq2seq_kit
from seq2seq_kit import hookimpl
from seq2seq_kit.config import Config
from seq2seq_kit.errors import ConfigError
from seq2seq_kit.plugins import build_registry


def read_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the run ``directory``, as TensorBoard reads it: tag ->
    [(step, value)] in the order written."""
    reader = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    reader.Reload()
    return {
        tag: [(event.step, event.value) for event in reader.Scalars(tag)]
        for tag in reader.Tags()["scalars"]
    }


@pytest.fixture
def heard(monkeypatch):
    """The records the training hooks give, by hook, heard beside the installed plugins."""
    records: dict[str, list[dict]] = {"on_update": [], "on_validation": []}
    listener = types.ModuleType("listener")
    listener.on_update = hookimpl(lambda record: records["on_update"].append(dict(record)))
    listener.on_validation = hookimpl(lambda record: records["on_validation"].append(dict(record)))
    registry = build_registry(extra_plugins=(listener,))
    names = {getattr(p, "__name__", "") for p in registry.manager.get_plugins()}
    assert "seq2seq_kit_tensorboard" in names, registry.failures  # found by its entry point
    monkeypatch.setattr("seq2seq_kit.training.registry", lambda: registry)
    monkeypatch.setattr("seq2seq_kit.plugins.registry", lambda: registry)
    monkeypatch.delenv(ENV, raising=False)
    return records


def numbers_config(epochs: int) -> Config:
    """num2words, 60 numbers, 12 of them held out: 3 updates an epoch."""
    config = Config()
    config.data.source, config.data.options = "num2words", {"count": 60, "high": 100}
    config.data.valid_fraction = 0.2
    config.train.epochs, config.train.progress = epochs, False
    config.train.batch_size, config.train.log_every, config.train.valid_every = 16, 2, 2
    return config


def history(model: Path) -> list[dict]:
    return json.loads((model / "model.json").read_text())["meta"]["history"]


def test_event_files_hold_every_figure_at_its_update(tmp_path, heard):
    seq2seq_kit.train(numbers_config(epochs=3), out=tmp_path / "model")
    assert [p.name for p in (tmp_path / "model.tensorboard").iterdir()] == ["run-1"]
    logged = read_scalars(tmp_path / "model.tensorboard" / "run-1")

    updates = heard["on_update"]
    assert [r["update"] for r in updates] == [2, 4, 6, 8]
    for tag, key in [
        ("train/loss", "train_loss"),
        ("train/learning_rate", "learning_rate"),
        ("train/target_tokens_per_second", "target_tokens_per_second"),
    ]:
        assert logged[tag] == [(r["update"], pytest.approx(r[key], rel=1e-6)) for r in updates]

    # every numeric figure of every validation, whatever metrics the records carry
    validations = heard["on_validation"]
    assert {r["evaluated_on"] for r in validations} == {"valid"}
    figures = {k for r in validations for k, v in r.items() if k not in POSITION}
    figures = {k for k in figures if isinstance(validations[0][k], float)}
    assert {"valid_loss", "valid_accuracy"} <= figures
    for key in figures:
        tag = "valid/" + key.removeprefix("valid_")
        assert logged[tag] == [
            (r["update"], pytest.approx(r[key], rel=1e-6)) for r in validations
        ], tag
    assert [step for step, _ in logged["valid/loss"]] == [2, 3, 4, 6, 8, 9]

    # the epochs, against the history model.json keeps
    epochs = history(tmp_path / "model")
    assert [r["updates"] for r in epochs] == [3, 6, 9]
    for tag, key in [
        ("epoch/train_loss", "train_loss"),
        ("epoch/learning_rate", "learning_rate"),
        ("epoch/seconds", "seconds"),
        ("epoch/epoch", "epoch"),
    ]:
        assert logged[tag] == [(r["updates"], pytest.approx(r[key], rel=1e-6)) for r in epochs]
    for record in epochs:  # each epoch's validation is the one logged at its last update
        assert (record["updates"], pytest.approx(record["valid_loss"], rel=1e-6)) in logged[
            "valid/loss"
        ]
    assert not {tag for tag in logged if tag.startswith("epoch/valid")}


def test_a_resumed_run_continues_its_curves_and_a_new_run_gets_its_own(tmp_path, heard):
    model, root = tmp_path / "model", tmp_path / "model.tensorboard"
    seq2seq_kit.train(numbers_config(epochs=2), out=model)
    seq2seq_kit.train(resume=model, epochs=3)
    assert sorted(p.name for p in root.iterdir()) == ["run-1"]
    assert len(list((root / "run-1").iterdir())) == 2  # an event file per process
    logged = read_scalars(root / "run-1")
    assert logged["epoch/epoch"] == [(3, 1.0), (6, 2.0), (9, 3.0)]
    assert logged["epoch/train_loss"] == [
        (r["updates"], pytest.approx(r["train_loss"], rel=1e-6)) for r in history(model)
    ]
    assert [step for step, _ in logged["train/loss"]] == [2, 4, 6, 8]

    config = numbers_config(epochs=1)
    config.train.overwrite = True
    seq2seq_kit.train(config, out=model)  # a new run: its steps start over
    assert sorted(p.name for p in root.iterdir()) == ["run-1", "run-2"]
    assert read_scalars(root / "run-2")["epoch/epoch"] == [(3, 1.0)]
    assert read_scalars(root / "run-1") == logged  # the earlier run is kept as it was


def test_without_a_model_directory_the_environment_names_the_log(tmp_path, heard, monkeypatch):
    config = Config()  # digits: no validation pairs, validation scores the training pairs
    config.train.epochs, config.train.progress = 2, False
    monkeypatch.setenv(ENV, str(tmp_path / "logs"))
    seq2seq_kit.train(config)
    logged = read_scalars(tmp_path / "logs" / "run-1")
    assert [step for step, _ in logged["train_set/loss"]] == [5, 10]
    assert "valid/loss" not in logged
    monkeypatch.delenv(ENV)
    seq2seq_kit.train(config)  # and without it, nowhere
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["run-1"]


def test_every_numeric_figure_of_a_validation_is_a_scalar_and_flags_are_not():
    record = {
        "update": 30,
        "epoch": 2,
        "step": 4,
        "valid_loss": 1.25,
        "valid_chrf": 41.5,  # a metric the trainer may add: no change needed here
        "valid_exact_match": 3,
        "evaluated_on": "valid",
        "best": True,
        "at_stop": False,
    }
    assert validation_scalars(record) == {
        "valid/loss": 1.25,
        "valid/chrf": 41.5,
        "valid/exact_match": 3.0,
    }
    on_train = validation_scalars({**record, "evaluated_on": "train"})
    assert sorted(on_train) == ["train_set/chrf", "train_set/exact_match", "train_set/loss"]
    with pytest.raises(ValueError, match="on_update record has no update count 'update'"):
        step_of({"epoch": 1, "train_loss": 2.0}, "update", "on_update")


def test_a_file_where_the_log_goes_is_a_named_error(tmp_path, heard):
    (tmp_path / "model.tensorboard").write_text("not a directory")
    config = Config()
    config.train.epochs, config.train.progress = 1, False
    with pytest.raises(ConfigError, match="model.tensorboard: the TensorBoard log directory"):
        seq2seq_kit.train(config, out=tmp_path / "model")


def test_a_run_resumed_behind_its_logged_steps_starts_a_new_run(tmp_path):
    root = tmp_path / "log"
    assert choose_run(root, 5) == (root / "run-1", None)
    writer = summary_writer(root / "run-1")
    for step in (10, 12):  # logged after the last checkpoint, then the process died
        writer.add_scalar("train/loss", 1.0, step)
    writer.close()
    assert choose_run(root, 13) == (root / "run-1", 12)  # past them: the same curves
    assert choose_run(root, 12) == (root / "run-2", None)  # over them: a run of its own


def test_the_last_step_survives_a_record_cut_short(tmp_path):
    writer = summary_writer(tmp_path)
    for step in (1, 2, 3):
        writer.add_scalar("train/loss", 0.5, step)
    writer.close()
    (path,) = tmp_path.iterdir()
    assert last_step(tmp_path) == 3
    path.write_bytes(path.read_bytes()[:-5])  # a crash in the middle of the last record
    assert last_step(tmp_path) == 2


IMPORTS = """
import sys
{before}
print(sorted(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules))
"""


def test_the_writer_imports_neither_torch_nor_tensorflow(tmp_path):
    fake = tmp_path / "site" / "torch"  # an importable torch that costs nothing
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("class Tensor:\n    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}

    def imported(code: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", IMPORTS.format(before=code)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    # tensorboardX alone imports torch where torch is installed
    assert imported("import tensorboardX") == "['torch']"
    registering = "import seq2seq_kit_tensorboard\nassert 'tensorboardX' not in sys.modules"
    writing = (
        "seq2seq_kit_tensorboard.on_validation("
        "record={'update': 1, 'valid_loss': 0.5}, out_dir='model')\n"
        "assert 'tensorboardX' in sys.modules"
    )
    assert imported(f"{registering}\n{writing}") == "[]"
    assert read_scalars(tmp_path / "model.tensorboard" / "run-1") == {"valid/loss": [(1, 0.5)]}
