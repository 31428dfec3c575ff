"""Training measured in updates: learning-rate schedules, gradient accumulation,
valid_every, save_every, max_updates, max_time, log_every, and their resumption."""

import copy
import itertools
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from test_interrupt import assert_same_training, numpy_model_class
from test_training import small_config

import seq2seq_kit
from seq2seq_kit import hookimpl, trainer
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config, TrainConfig
from seq2seq_kit.errors import ConfigError, TrainingError
from seq2seq_kit.plugins import build_registry, get_backend
from seq2seq_kit.schedules import learning_rate_at
from seq2seq_kit.spec import ModelSpec, TransformerSpec
from seq2seq_kit.trainer import fit

PAIRS = 10  # batches per epoch with batch_size 1
SOURCES = [[100 + i] for i in range(PAIRS)]  # one distinct id per pair names its batch
TARGETS = [[4 + i % 4] * (1 + i % 3) for i in range(PAIRS)]


class FakeModel:
    """A model that learns nothing: it records each update (the learning rate set before
    it, the source ids of each of its batches) and counts updates in its one weight."""

    def __init__(self, hidden_size=16):
        self.spec = ModelSpec(128, 8, hidden_size=hidden_size)
        self.rate = None
        self.updates = []  # (learning rate, ((source id, ...) per batch))
        self.w = np.zeros(1, dtype=np.float32)

    def set_learning_rate(self, learning_rate):
        self.rate = learning_rate

    def train_step(self, batches):
        assert isinstance(batches, list) and batches
        self.updates.append((self.rate, tuple(tuple(b.src_ids[:, 0].tolist()) for b in batches)))
        self.w += 1.0
        return 1.0

    def log_probs(self, batch):
        rows, width = batch.tgt_in.shape
        return np.full((rows, width, 8), -math.log(8), dtype=np.float32)

    def get_weights(self):
        return {"w": self.w.copy()}

    def set_weights(self, weights):
        self.w = weights["w"].copy()


def train_fake(model=None, state=None, **options):
    """``fit`` on the ten pairs, a batch each, without validation pairs; returns the model,
    the state and every save as (epoch, step, updates, stopped)."""
    model = model or FakeModel()
    saves = []

    def save(state):
        saves.append((state.epoch, state.step, state.updates, state.stopped))

    config = TrainConfig(**{"batch_size": 1, "progress": False, "save_seconds": 3600.0} | options)
    state = fit(model, (SOURCES, TARGETS), None, config, state=state, save=save)
    return model, state, saves


# Schedules: the formulas, written out here apart from the module.


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 100])
def test_schedule_values_follow_the_papers_formulas(n):
    warmup, d_model = 4, 64
    noam = 2.0 * 64**-0.5 * min(1 / math.sqrt(n), n / 8.0)  # 4 ** 1.5 == 8
    assert learning_rate_at("noam", n, 2.0, warmup_steps=warmup, d_model=d_model) == (
        pytest.approx(noam, rel=1e-12)
    )
    inverse = 0.5 * (n / 4 if n <= 4 else math.sqrt(4 / n))
    assert learning_rate_at("inverse_sqrt", n, 0.5, warmup_steps=warmup, d_model=d_model) == (
        pytest.approx(inverse, rel=1e-12)
    )
    assert learning_rate_at("constant", n, 0.5, warmup_steps=0, d_model=d_model) == 0.5
    constant = 0.5 * min(n, 4) / 4
    assert learning_rate_at("constant", n, 0.5, warmup_steps=4, d_model=d_model) == constant


def test_schedules_peak_at_the_end_of_warmup():
    for name, peak in (("noam", (64 * 10) ** -0.5), ("inverse_sqrt", 1.0)):
        rates = [learning_rate_at(name, n, 1.0, warmup_steps=10, d_model=64) for n in range(1, 40)]
        assert int(np.argmax(rates)) + 1 == 10
        assert max(rates) == pytest.approx(peak, rel=1e-12)


def test_bad_schedule_arguments_are_refused():
    with pytest.raises(ValueError, match="needs warmup_steps >= 1"):
        learning_rate_at("noam", 1, 1.0, warmup_steps=0, d_model=8)
    with pytest.raises(ValueError, match="start at 1"):
        learning_rate_at("noam", 0, 1.0, warmup_steps=4, d_model=8)
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosine'"):
        learning_rate_at("cosine", 1, 1.0, warmup_steps=4, d_model=8)


@pytest.mark.parametrize("schedule", ["noam", "inverse_sqrt"])
def test_the_learning_rate_is_set_before_every_update(schedule):
    model, state, _ = train_fake(
        epochs=2, learning_rate=2.0, lr_schedule=schedule, warmup_steps=6, accumulate=3
    )
    rates = [rate for rate, _ in model.updates]
    assert len(rates) == state.updates == 8  # 4 updates an epoch: 3 + 3 + 3 + 1 batches
    # d_model of an RNN spec is its hidden_size (16)
    expected = [learning_rate_at(schedule, n, 2.0, warmup_steps=6, d_model=16) for n in range(1, 9)]
    assert rates == expected
    assert len(set(rates)) == 8
    assert state.history[-1]["learning_rate"] == expected[-1]


def test_noam_reads_a_transformers_d_model():
    model = FakeModel()
    model.spec = TransformerSpec(128, 8, d_model=48, num_heads=4)
    train_fake(model, epochs=1, lr_schedule="noam", warmup_steps=4)
    rates = [rate for rate, _ in model.updates]
    assert rates == [
        pytest.approx(1e-3 * 48**-0.5 * min(n**-0.5, n * 4**-1.5), rel=1e-12)
        for n in range(1, PAIRS + 1)
    ]


# Gradient accumulation.


def test_accumulate_groups_consecutive_batches_with_a_short_last_group():
    single, _, _ = train_fake(epochs=2)
    grouped, state, _ = train_fake(epochs=2, accumulate=3)
    assert [len(batches) for _, batches in grouped.updates] == [3, 3, 3, 1] * 2
    # the same batches in the same order: grouping changes no shuffle
    assert [b for _, batches in grouped.updates for b in batches] == [
        b for _, batches in single.updates for b in batches
    ]
    for epoch in range(2):
        seen = [b[0] for _, batches in grouped.updates[4 * epoch : 4 * epoch + 4] for b in batches]
        assert sorted(seen) == [s[0] for s in SOURCES]
    assert [r["updates"] for r in state.history] == [4, 8]
    assert state.step == 0 and state.stopped == "epochs"


def test_accumulate_larger_than_an_epoch_makes_one_update_per_epoch():
    model, state, _ = train_fake(epochs=3, accumulate=64)
    assert [len(batches) for _, batches in model.updates] == [PAIRS] * 3
    assert state.updates == 3


# Validations, saves and limits counted in updates.


def test_valid_every_validates_every_n_updates_and_at_epoch_ends(monkeypatch):
    seen = []

    def evaluate(model, sources, targets, group=None):
        seen.append(len(model.updates))
        return 1.0, 0.5

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    records = []
    config = TrainConfig(batch_size=1, progress=False, epochs=2, valid_every=4)
    fit(FakeModel(), (SOURCES, TARGETS), None, config, on_validation=records.append)
    # 10 updates an epoch: 4, 8, the end of epoch 1, 12, 16, and 20 (an epoch end) once
    assert seen == [4, 8, 10, 12, 16, 20]
    assert [(r["update"], r["epoch"], r["step"]) for r in records] == [
        (4, 1, 4),
        (8, 1, 8),
        (10, 1, 10),
        (12, 2, 2),
        (16, 2, 6),
        (20, 2, 10),
    ]


def test_patience_counts_validations_with_valid_every(monkeypatch):
    scores = iter([1.0, 1.0, 1.0, 0.5])  # the third validation is the second not better
    monkeypatch.setattr(trainer, "evaluate", lambda model, s, t, group=None: (next(scores), 0.5))
    model = FakeModel()
    config = TrainConfig(batch_size=1, progress=False, epochs=5, valid_every=3, patience=2)
    state = fit(model, (SOURCES, TARGETS), (SOURCES, TARGETS), config)
    assert state.stopped == "patience"
    assert state.updates == len(model.updates) == 9  # in the middle of epoch 1
    assert (state.epoch, state.step, state.bad_epochs) == (0, 9, 2)
    np.testing.assert_array_equal(model.w, [3.0])  # the best weights: after update 3


def test_save_every_writes_in_the_middle_of_epochs():
    _, state, saves = train_fake(epochs=2, save_every=4)
    # mid-epoch at 4, 8, 12, 16; the end at 20 (update 10 ends an epoch but is no multiple)
    assert saves == [
        (0, 4, 4, None),
        (0, 8, 8, None),
        (1, 2, 12, None),
        (1, 6, 16, None),
        (2, 0, 20, "epochs"),
    ]


def test_save_every_at_an_epoch_end_saves_once_after_the_epoch():
    _, _, saves = train_fake(epochs=2, save_every=5, accumulate=2)  # 5 updates an epoch
    assert saves == [(1, 0, 5, None), (2, 0, 10, "epochs")]


@pytest.mark.parametrize(
    "limit, save", [(7, (0, 7, 7, "max_updates")), (10, (1, 0, 10, "max_updates"))]
)
def test_max_updates_stops_exactly_with_a_validation_and_a_save(monkeypatch, limit, save):
    validated = []

    def evaluate(model, sources, targets, group=None):
        validated.append(len(model.updates))
        return 1.0, 0.5

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    model, state, saves = train_fake(epochs=5, max_updates=limit)
    assert len(model.updates) == state.updates == limit
    assert state.stopped == "max_updates"
    assert saves == [save]
    assert validated[-1] == limit


def test_resuming_a_fake_run_from_a_mid_epoch_snapshot_repeats_it():
    snapshots = []
    config = TrainConfig(
        batch_size=1,
        progress=False,
        epochs=3,
        accumulate=3,
        save_every=3,
        lr_schedule="inverse_sqrt",
        warmup_steps=5,
        teacher_forcing=0.5,  # draws from the shuffling generator between updates
    )
    straight = FakeModel()
    fit(
        straight,
        (SOURCES, TARGETS),
        None,
        config,
        save=lambda s: snapshots.append(copy.deepcopy(s)),
    )
    # 4 updates an epoch (3 + 3 + 3 + 1 batches): update 6 is epoch 2's second
    snapshot = snapshots[1]
    assert (snapshot.epoch, snapshot.step, snapshot.updates) == (1, 6, 6)
    resumed = FakeModel()
    resumed.w[:] = 6.0
    fit(resumed, (SOURCES, TARGETS), None, config, state=snapshot)
    assert resumed.updates == straight.updates[6:]


def test_a_non_finite_loss_names_the_mid_epoch_checkpoint_kept():
    class Diverging(FakeModel):
        def train_step(self, batches):
            super().train_step(batches)
            return float("nan") if len(self.updates) == 6 else 1.0

    config = TrainConfig(batch_size=1, progress=False, epochs=2, save_every=4, accumulate=2)
    saves = []
    with pytest.raises(TrainingError) as caught:
        fit(Diverging(), (SOURCES, TARGETS), None, config, save=saves.append, out_dir="DIR")
    # updates of two batches: the sixth ends at epoch 2 step 2; the save at 4 is epoch 1's 8
    assert str(caught.value) == (
        "epoch 2 step 2: the training loss is nan (not finite; learning rate 0.001); "
        "training stopped and DIR keeps the checkpoint written at epoch 1 step 8"
    )
    assert len(saves) == 1


# Wall-clock budget, through the command line.


def test_max_time_stops_after_the_update_that_ends_the_budget(tmp_path, monkeypatch):
    now = [0.0]
    cls = numpy_model_class()
    original = cls.train_step

    def train_step(self, batches):  # each update takes ten seconds of the fake clock
        now[0] += 10.0
        return original(self, batches)

    monkeypatch.setattr(cls, "train_step", train_step)
    monkeypatch.setattr(trainer, "clock", lambda: now[0])
    out = tmp_path / "m"
    args = ["train", "--out", str(out), "--epochs", "50", "--max-time", "35", "--no-progress"]
    assert main(args) == 0
    meta = load_checkpoint(out).meta
    assert meta["trainer"]["stopped"] == "max_time"
    assert meta["trainer"]["updates"] == 4  # 40 s >= 35 s after the fourth
    assert meta["config"]["train"]["max_time"] == 35.0
    monkeypatch.undo()
    assert seq2seq_kit.load(out).translate(["7"])


# Log lines every log_every updates: stdout and the hooks.


def test_log_every_lines_reach_stdout(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "train", "--epochs", "3", "--log-every", "2"]
        + ["--no-progress", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    # digits: 9 pairs in batches of 2, 5 updates an epoch, 15 in all
    lines = [line for line in res.stdout.splitlines() if line.startswith("update ")]
    numbers = []
    for line in lines:
        match = re.fullmatch(
            r"update (\d+) \(epoch (\d)\): train loss ([\d.]+); learning rate 0\.001; "
            r"(\d+) target tokens/s",
            line,
        )
        assert match, line
        numbers.append((int(match[1]), int(match[2])))
        assert int(match[4]) > 0
    assert numbers == [(2, 1), (4, 1), (6, 2), (8, 2), (10, 2), (12, 3), (14, 3)], res.stderr


class Recorder:
    def __init__(self):
        self.updates, self.validations = [], []

    @hookimpl
    def on_update(self, record):
        self.updates.append(record)

    @hookimpl
    def on_validation(self, record, out_dir):
        self.validations.append((record, out_dir))


def test_update_and_validation_records_reach_plugins(tmp_path, monkeypatch):
    recorder = Recorder()
    registry = build_registry(extra_plugins=(recorder,))
    monkeypatch.setattr("seq2seq_kit.training.registry", lambda: registry)
    monkeypatch.setattr("seq2seq_kit.plugins.registry", lambda: registry)
    config = small_config(2)  # 6 updates an epoch
    config.train.lr_patience = 0  # a constant learning rate
    config.train.log_every, config.train.valid_every = 4, 5
    seq2seq_kit.train(config, out=tmp_path / "m")
    assert [(r["update"], r["epoch"], r["step"]) for r in recorder.updates] == [
        (4, 1, 4),
        (8, 2, 2),
        (12, 2, 6),
    ]
    for record in recorder.updates:
        assert record["train_loss"] > 0 and record["target_tokens_per_second"] > 0
        assert record["learning_rate"] == 0.01
    assert [(r["update"], r["evaluated_on"]) for r, _ in recorder.validations] == [
        (5, "valid"),
        (6, "valid"),
        (10, "valid"),
        (12, "valid"),
    ]
    assert {d for _, d in recorder.validations} == {str(tmp_path / "m")}
    assert recorder.validations[0][0]["best"]  # the first is the best so far


# Exact resumption from a mid-epoch save_every checkpoint, NumPy backend.


def test_resume_from_a_save_every_checkpoint_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    def config():
        cfg = small_config(3)  # dropout and scheduled sampling; 6 updates an epoch
        cfg.train.lr_patience, cfg.train.warmup_steps = 0, 5
        cfg.train.lr_schedule, cfg.train.save_every = "inverse_sqrt", 4
        cfg.train.save_seconds = 3600.0
        return cfg

    seq2seq_kit.train(config(), out=tmp_path / "straight")
    cls = numpy_model_class()
    original, calls = cls.train_step, itertools.count(1)

    def train_step(self, batches):
        if next(calls) == 11:  # a crash after the save at update 8
            raise RuntimeError("power cut")
        return original(self, batches)

    monkeypatch.setattr(cls, "train_step", train_step)
    with pytest.raises(RuntimeError, match="power cut"):
        seq2seq_kit.train(config(), out=tmp_path / "split")
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "split").meta["trainer"]
    assert (saved["epoch"], saved["step"], saved["updates"]) == (1, 2, 8)
    assert saved["stopped"] is None
    resumed = seq2seq_kit.train(resume=tmp_path / "split")
    assert resumed.meta["trainer"]["stopped"] == "epochs"
    done = [load_checkpoint(tmp_path / d, extra=True) for d in ("straight", "split")]
    assert_same_training(*done)
    assert done[0].meta["trainer"]["updates"] == done[1].meta["trainer"]["updates"] == 18


# Configuration and resume rules.


def test_a_schedule_needs_warmup_and_excludes_lr_patience(tmp_path, capsys):
    out = str(tmp_path / "m")
    assert main(["train", "--out", out, "--lr-schedule", "noam"]) == 2
    assert "lr_schedule = 'noam' needs warmup_steps >= 1" in capsys.readouterr().err
    args = ["--lr-schedule", "inverse_sqrt", "--warmup-steps", "4", "--lr-patience", "2"]
    assert main(["train", "--out", out, *args]) == 2
    err = capsys.readouterr().err
    assert "lr_schedule = 'inverse_sqrt'" in err and "lr_patience = 2" in err
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="needs warmup_steps"):
        TrainConfig(lr_schedule="noam")
    assert TrainConfig(lr_schedule="noam", warmup_steps=1).warmup_steps == 1


def test_training_flags_are_generated(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    flags = ["--lr-schedule", "--warmup-steps", "--accumulate", "--valid-every"]
    flags += ["--save-every", "--max-updates", "--max-time", "--log-every"]
    for flag in flags:
        assert f"{flag} " in text


@pytest.fixture
def saved_run(tmp_path):
    config = Config()
    config.train.epochs, config.train.progress, config.train.max_updates = 4, False, 7
    seq2seq_kit.train(config, out=tmp_path / "m")
    return tmp_path / "m"


def test_max_updates_records_the_stop_and_resume_asks_for_more(saved_run):
    meta = json.loads((saved_run / "model.json").read_text())["meta"]
    assert meta["trainer"]["stopped"] == "max_updates"
    assert meta["trainer"]["updates"] == 7
    assert (meta["trainer"]["epoch"], meta["trainer"]["step"]) == (1, 2)  # 5 an epoch
    with pytest.raises(ConfigError, match="has done 7 updates and train.max_updates is 7"):
        seq2seq_kit.train(resume=saved_run)
    resumed = seq2seq_kit.train(
        resume=saved_run, config=Config.model_validate({"train": {"max_updates": 0}})
    )
    assert resumed.meta["trainer"]["stopped"] == "epochs"
    assert resumed.meta["trainer"]["updates"] == 20


@pytest.mark.parametrize(
    "changed", [{"accumulate": 2}, {"lr_schedule": "inverse_sqrt", "warmup_steps": 2}]
)
def test_accumulate_and_the_schedule_cannot_change_on_resume(saved_run, changed):
    config = Config.model_validate({"train": {"max_updates": 0, **changed}})
    key = next(iter(changed))
    with pytest.raises(ConfigError, match=f"train.{key} is .* in the saved run but"):
        seq2seq_kit.train(resume=saved_run, config=config)


def test_lr_patience_added_on_resume_to_a_scheduled_run_is_refused(tmp_path):
    config = Config()
    config.train.epochs, config.train.progress = 1, False
    config.train.warmup_steps, config.train.lr_schedule = 3, "noam"
    seq2seq_kit.train(config, out=tmp_path / "m")
    more = Config.model_validate({"train": {"epochs": 2, "lr_patience": 2}})
    with pytest.raises(ConfigError, match=r"^resume=.*lr_schedule = 'noam' .* lr_patience = 2"):
        seq2seq_kit.train(resume=tmp_path / "m", config=more)
    rates = [r["learning_rate"] for r in seq2seq_kit.train(resume=tmp_path / "m", epochs=2).history]
    # digits: 5 updates an epoch; noam with d_model = hidden_size 32
    expected = [1e-3 * 32**-0.5 * min(n**-0.5, n * 3**-1.5) for n in (5, 10)]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_a_mid_epoch_early_stop_is_recorded_and_resuming_needs_more_patience(tmp_path, monkeypatch):
    never_better = lambda *args, **kwargs: (1.0, 0.5)  # noqa: E731
    monkeypatch.setattr(trainer, "evaluate", never_better)
    config = Config()
    config.data.source, config.data.options = "num2words", {"count": 40}
    config.train.epochs, config.train.progress = 3, False
    config.train.valid_every, config.train.patience = 2, 1
    seq2seq_kit.train(config, out=tmp_path / "m")
    saved = load_checkpoint(tmp_path / "m").meta["trainer"]
    # validations at updates 2 (the best) and 4 (not better): a stop in epoch 1
    assert (saved["stopped"], saved["updates"], saved["epoch"], saved["step"]) == (
        "patience",
        4,
        0,
        4,
    )
    with pytest.raises(ConfigError, match=r"stopped early in epoch 1 \(train.patience 1 valid"):
        seq2seq_kit.train(resume=tmp_path / "m")
    more = Config.model_validate({"train": {"patience": 0}})
    resumed = seq2seq_kit.train(resume=tmp_path / "m", config=more)
    assert resumed.meta["trainer"]["stopped"] == "epochs"


def test_a_model_stopped_inside_its_first_epoch_reports_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "early"
    tiny = ["--d-model", "8", "--num-heads", "2", "--ff-size", "8", "--no-progress"]
    args = ["train", "--data", "digits", "--architecture", "transformer", *tiny]
    assert main([*args, "--batch-size", "1", "--max-updates", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", "--model", str(out)]) == 0
    assert "0 epochs (3 updates, 1 validation), stopped by max_updates" in capsys.readouterr().out
    # no epoch ended: the stop's validation is drawn, by update, and the attention heatmap
    assert not (out / "curves.png").exists()
    assert main(["plot", "--model", str(out), "--input", "7"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'curves.png'}" in printed and (out / "attention.png").is_file()


def test_a_schedule_says_its_peak_learning_rate_before_training(tmp_path, caplog):
    # noam's learning_rate is a factor near 1: left at Adam's 0.001 it peaks near 1e-5
    args = ["train", "--data", "digits", "--epochs", "1", "--no-progress"]
    args += ["--lr-schedule", "noam", "--warmup-steps", "100", "--out", str(tmp_path / "m")]
    with caplog.at_level("INFO", logger="seq2seq_kit"):
        assert main(args) == 0
    expected = learning_rate_at("noam", 100, 1e-3, warmup_steps=100, d_model=32)
    assert f"noam schedule, {expected:.3g} at update 100" in caplog.text


# A stop between validation points: its validation is a report, not a plateau.

STOP_PAIRS = 8  # in batches of 2: 4 updates an epoch, 12 in 3 epochs
STOP_SOURCES = [[3 + i % 5, 4 + i % 3] for i in range(STOP_PAIRS)]
STOP_TARGETS = [[5 + i % 4] * (1 + i % 2) for i in range(STOP_PAIRS)]


def scores_by_update(monkeypatch, at_stop):
    """``evaluate`` scores the model by its optimizer's update count, so flat and better
    validations fall where the test puts them: 1.0 before update 8, 0.5 from there on
    (epoch ends at 4, 8, 12), and ``at_stop`` at any update no validation is due at."""
    due = {3, 4, 6, 8, 9, 12}  # epoch ends and multiples of valid_every 3

    def evaluate(model, sources, targets, group=None):
        update = int(model.optimizer_state()["step"])
        return (1.0 if update < 8 else 0.5) if update in due else at_stop, 0.5

    monkeypatch.setattr(trainer, "evaluate", evaluate)


def tiny_numpy_model():
    spec = ModelSpec(16, 16, embedding_size=4, hidden_size=4)
    return get_backend("numpy").create(spec, seed=1)


@pytest.mark.parametrize("at_stop", [2.0, 0.1])  # flat, better than every other
@pytest.mark.parametrize(
    "valid_every, patience, lr_patience", [(0, 0, 1), (0, 2, 0), (3, 0, 1), (3, 3, 0)]
)
def test_resuming_after_a_stop_at_any_update_repeats_the_uninterrupted_run(
    monkeypatch, at_stop, valid_every, patience, lr_patience
):
    scores_by_update(monkeypatch, at_stop)
    options = {"batch_size": 2, "progress": False, "epochs": 3, "learning_rate": 0.03}
    options |= {"valid_every": valid_every, "patience": patience, "lr_patience": lr_patience}
    pairs = (STOP_SOURCES, STOP_TARGETS)
    straight = tiny_numpy_model()
    done = fit(straight, pairs, pairs, TrainConfig(**options))
    assert done.stopped == "epochs" and done.updates == 12
    for stop in range(1, 12):
        model, saved = tiny_numpy_model(), []

        def save(state, model=model, saved=saved):
            saved[:] = [copy.deepcopy(state), model.get_weights(), model.optimizer_state()]

        config, validations = TrainConfig(**options, max_updates=stop), []
        state = fit(model, pairs, pairs, config, save=save, on_validation=validations.append)
        assert state.stopped == "max_updates" and state.updates == stop
        assert state.validations == validations  # every one, within epochs too
        due = stop % 4 == 0 or (valid_every and stop % valid_every == 0)
        assert (validations[-1]["update"], validations[-1]["at_stop"]) == (stop, not due)
        assert [r["updates"] for r in state.history if r.get("at_stop")] == ([] if due else [stop])
        if not due:
            assert not validations[-1]["best"]
        state, last, optimizer = saved
        model = tiny_numpy_model()
        model.set_weights(last)
        model.set_optimizer_state(optimizer)
        state = fit(model, pairs, pairs, TrainConfig(**options), state=state)
        epochs = [record for record in state.history if not record.get("at_stop")]
        assert len(epochs) == len(done.history), stop
        for a, b in zip(done.history, epochs, strict=True):
            for key in ("epoch", "valid_loss", "learning_rate", "updates"):
                assert a[key] == b[key], (stop, a["epoch"], key)
        for key in ("learning_rate", "best_score", "bad_epochs", "plateau_epochs", "updates"):
            assert getattr(state, key) == getattr(done, key), (stop, key)
        made = [[v for v in s.validations if not v["at_stop"]] for s in (state, done)]
        assert made[0] == made[1], stop
        for key, value in straight.get_weights().items():
            np.testing.assert_allclose(model.get_weights()[key], value, atol=1e-7, rtol=0)


def stop_config(tmp_path, **train):
    """A tiny RNN on 8 training pairs in batches of 2 (4 updates an epoch), 3 epochs."""
    (tmp_path / "d.tsv").write_text(
        "".join(f"{i}\t{'ab'[i % 2] * (1 + i % 3)}\n" for i in range(8))
    )
    (tmp_path / "v.tsv").write_text("1\tbb\n6\taa\n")
    config = Config()
    config.data.source, config.data.valid = str(tmp_path / "d.tsv"), str(tmp_path / "v.tsv")
    config.model.hidden_size, config.model.embedding_size = 4, 4
    config.train.epochs, config.train.batch_size, config.train.progress = 3, 2, False
    config.train.learning_rate, config.train.lr_patience = 0.03, 1
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def test_a_stop_between_epoch_ends_records_its_validation_and_resumes_exactly(
    tmp_path, monkeypatch
):
    scores_by_update(monkeypatch, at_stop=2.0)  # flat: a plateau cut if it counted
    seq2seq_kit.train(stop_config(tmp_path), out=tmp_path / "straight")
    seq2seq_kit.train(stop_config(tmp_path, max_updates=4), out=tmp_path / "four")
    seq2seq_kit.train(stop_config(tmp_path, max_updates=7), out=tmp_path / "split")
    stopped = load_checkpoint(tmp_path / "split", extra=True)
    assert [r.get("at_stop", False) for r in stopped.meta["history"]] == [False, True]
    record = stopped.meta["history"][1]
    assert (record["epoch"], record["step"], record["updates"]) == (2, 3, 7)
    assert (record["valid_loss"], record["learning_rate"]) == (2.0, 0.03)
    trainer_state = stopped.meta["trainer"]
    assert trainer_state["learning_rate"] == 0.03 and trainer_state["best_score"] == 1.0
    assert trainer_state["plateau_epochs"] == trainer_state["bad_epochs"] == 0
    # the saved weights: the best of the validations due so far, the end of epoch 1
    best = load_checkpoint(tmp_path / "four", extra=True).extra["last"]
    for key, value in best.items():
        np.testing.assert_array_equal(stopped.weights[key], value, err_msg=key)
    more = Config.model_validate({"train": {"max_updates": 0}})
    resumed = seq2seq_kit.train(resume=tmp_path / "split", config=more)
    assert [r.get("at_stop", False) for r in resumed.history] == [False, True, False, False]
    assert [r["learning_rate"] for r in trainer.epoch_records(resumed.history)] == [0.03] * 3
    done = [load_checkpoint(tmp_path / d, extra=True) for d in ("straight", "split")]
    done[1].meta["history"] = trainer.epoch_records(done[1].meta["history"])
    assert_same_training(*done)


def test_a_stop_before_any_validation_keeps_the_last_weights_also_when_resumed(
    tmp_path, monkeypatch
):
    scores_by_update(monkeypatch, at_stop=2.0)
    out = tmp_path / "m"
    seq2seq_kit.train(stop_config(tmp_path, max_updates=1), out=out)
    seq2seq_kit.train(resume=out, config=Config.model_validate({"train": {"max_updates": 2}}))
    saved = load_checkpoint(out, extra=True)
    assert [(r["updates"], r["at_stop"]) for r in saved.meta["history"]] == [(1, True), (2, True)]
    assert saved.meta["trainer"]["best_score"] is None
    for key, value in saved.extra["last"].items():
        np.testing.assert_array_equal(saved.weights[key], value, err_msg=key)
