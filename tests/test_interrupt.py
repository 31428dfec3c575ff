"""SIGINT and SIGTERM during training: the step finishes, the checkpoint is written, the
message says where, the exit status is 128 + the signal, and resuming is exact; epoch lines
reach a redirected stdout while training runs."""

import itertools
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_training import small_config

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.config import TrainConfig
from seq2seq_kit.errors import TrainingInterrupted
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.trainer import fit

STEPS_PER_EPOCH = 6  # small_config: 45 training pairs in batches of 8
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def sigint_as_at_a_terminal():
    """A test run started in the background inherits an ignored SIGINT, which training
    leaves ignored; these tests need it to arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def numpy_model_class():
    return type(get_backend("numpy").create(ModelSpec(4, 4, hidden_size=2)))


def signal_after_steps(monkeypatch, steps, *signals):
    """Make the numpy model's train step number ``steps`` (counted over the whole run) send
    ``signals`` to this process once it has taken the step."""
    cls = numpy_model_class()
    original = cls.train_step
    calls = itertools.count(1)

    def train_step(self, batch):
        loss = original(self, batch)
        if next(calls) == steps:
            for number in signals:
                signal.raise_signal(number)
        return loss

    monkeypatch.setattr(cls, "train_step", train_step)


def assert_same_training(a, b):
    """Two finished model directories hold identical weights, optimizer state, history and
    validations (but those made only at a stop, which an uninterrupted run did not make)."""
    for x, y in zip(a.meta["history"], b.meta["history"], strict=True):
        for key in ("epoch", "train_loss", "valid_loss", "valid_accuracy", "learning_rate"):
            assert x[key] == y[key], (x["epoch"], key)
    made = [[v for v in d.meta["validations"] if not v["at_stop"]] for d in (a, b)]
    assert made[0] == made[1] and made[0]
    for name in ("last", "optimizer"):
        for key, value in a.extra[name].items():
            np.testing.assert_array_equal(value, b.extra[name][key], err_msg=f"{name} {key}")
    for key, value in a.weights.items():
        np.testing.assert_array_equal(value, b.weights[key], err_msg=key)


def record_batch_rows(monkeypatch):
    """Rows of each batch the numpy model trains on, in order, until ``monkeypatch.undo``."""
    cls = numpy_model_class()
    original = cls.train_step
    rows = []

    def train_step(self, batches):
        rows.append(sum(len(batch) for batch in batches))  # one batch a step: accumulate 1
        return original(self, batches)

    monkeypatch.setattr(cls, "train_step", train_step)
    return rows


@POSIX_ONLY
@pytest.mark.parametrize(
    ("number", "epoch", "step", "bucket", "batch_type"),
    [
        (signal.SIGINT, 3, 2, False, "sentences"),  # in the middle of an epoch
        # after the last step of an epoch, before its evaluation
        (signal.SIGTERM, 2, STEPS_PER_EPOCH, True, "sentences"),
        # batches of at most 100 padded tokens, their rows varying with the lengths
        (signal.SIGINT, 3, 2, True, "tokens"),
    ],
)
def test_signal_saves_mid_epoch_and_resume_is_exact(
    tmp_path, monkeypatch, number, epoch, step, bucket, batch_type
):
    config = small_config(5)  # dropout and scheduled sampling: both draw random numbers
    config.train.bucket = bucket
    if batch_type == "tokens":
        config.train.batch_type, config.train.batch_size = "tokens", 100
    rows = record_batch_rows(monkeypatch)
    seq2seq_kit.train(config, out=tmp_path / "straight")
    monkeypatch.undo()
    # fixed-size batches, or sorted lengths cut the same way: the same steps each epoch
    steps_per_epoch, rest = divmod(len(rows), config.train.epochs)
    assert rest == 0 and sum(rows[:steps_per_epoch]) == 45
    if batch_type == "sentences":
        assert steps_per_epoch == STEPS_PER_EPOCH
    else:
        assert len(set(rows)) > 1 and max(rows) > 8  # not 8 pairs a batch

    config.train.save_seconds = 3600.0  # only the interruption saves
    signal_after_steps(monkeypatch, (epoch - 1) * steps_per_epoch + step, number)
    out = tmp_path / "split"
    with pytest.raises(TrainingInterrupted) as caught:
        seq2seq_kit.train(config, out=out)
    assert str(caught.value) == (
        f"interrupted at epoch {epoch} step {step}; saved to {out}; continue with "
        f"resume={str(out)!r}"
    )
    assert caught.value.exit_code == 128 + number
    saved = load_checkpoint(out, extra=True)
    assert saved.meta["trainer"]["epoch"] == epoch - 1
    assert saved.meta["trainer"]["step"] == step
    assert saved.meta["trainer"]["stopped"] == "interrupted"
    assert len(saved.meta["history"]) == epoch - 1
    seq2seq_kit.load(out).translate(["12"])  # the directory is a usable model already

    monkeypatch.undo()
    seq2seq_kit.train(resume=out)
    done = [load_checkpoint(tmp_path / d, extra=True) for d in ("straight", "split")]
    assert_same_training(*done)


@POSIX_ONLY
def test_handlers_are_restored_after_training_and_after_an_interruption(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seq2seq_kit.train(small_config(1))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    signal_after_steps(monkeypatch, 1, signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        seq2seq_kit.train(small_config(1), out=tmp_path / "m")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@POSIX_ONLY
def test_without_an_output_directory_the_message_says_nothing_was_saved(monkeypatch):
    model = get_backend("numpy").create(ModelSpec(6, 6, hidden_size=4))
    pairs = ([[3, 4], [5]], [[4], [3, 5]])
    signal_after_steps(monkeypatch, 2, signal.SIGINT)
    config = TrainConfig(epochs=3, batch_size=1, progress=False)
    with pytest.raises(
        TrainingInterrupted, match=r"^interrupted at epoch 1 step 2; nothing was saved"
    ):
        fit(model, pairs, None, config)


@POSIX_ONLY
def test_a_second_sigint_aborts_at_once_without_saving(tmp_path, monkeypatch):
    signal_after_steps(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        seq2seq_kit.train(small_config(2), out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


# The command line, in a child process whose stdout is a file.

TRAIN = ["train", "--data", "num2words", "--limit", "300", "--no-progress"]


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(tmp_path, *args):
    """``seq2seq-kit train`` with stdout redirected to a file; returns the process and the
    file's path once the first epoch line is in the file (the run lasts far longer)."""
    log = tmp_path / "train.log"
    with open(log, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq_kit", *TRAIN, *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            # as typed at a terminal: a shell's background job would ignore SIGINT
            preexec_fn=default_sigint if os.name == "posix" else None,
        )
    deadline = time.monotonic() + 300  # generous: a slow, shared machine
    while "epoch 1/" not in log.read_text() and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first epoch line: {proc.stderr.read()}")
        time.sleep(0.05)
    return proc, log


def test_epoch_lines_reach_a_redirected_stdout_while_training(tmp_path):
    proc, log = start_training(tmp_path, "--epochs", "10000", "--out", str(tmp_path / "m"))
    try:
        assert proc.poll() is None  # the line came while training ran, not at exit
        first = log.read_text().splitlines()[0]
        assert re.fullmatch(
            r"epoch 1/10000: train loss [\d.]+; valid loss [\d.]+, accuracy [\d.]+; "
            r"learning rate 0\.001; [\d.]+ s",
            first,
        ), first
    finally:
        proc.kill()
        proc.communicate()


@POSIX_ONLY
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_cli_signal_saves_exits_128_plus_signal_and_resume_continues(tmp_path, number):
    out = tmp_path / "m"
    proc, log = start_training(tmp_path, "--epochs", "10000", "--out", str(out))
    proc.send_signal(number)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + number, stderr
    assert "Traceback" not in stderr
    match = re.search(
        r"interrupted at epoch (\d+) step (\d+); saved to (.+); continue with ", stderr
    )
    assert match and match[3] == str(out), stderr
    assert f"continue with --resume {out}\n" in stderr
    epoch, step = int(match[1]), int(match[2])
    trainer = load_checkpoint(out).meta["trainer"]
    # mid-epoch: ``step`` steps of epoch ``epoch`` taken; during its evaluation: epoch done
    assert (trainer["epoch"], trainer["step"]) in ((epoch - 1, step), (epoch, 0))
    resuming = f"resuming at epoch {epoch} step {step}" if trainer["step"] else ""
    if number == signal.SIGTERM:
        return
    # resume to the end of the interrupted epoch: the same weights as a run straight there
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "train", "--resume", str(out)]
        + ["--epochs", str(epoch), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert resuming in res.stdout
    straight = tmp_path / "straight"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq_kit",
            *TRAIN,
            "--epochs",
            str(epoch),
            "--out",
            str(straight),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert_same_training(load_checkpoint(out, extra=True), load_checkpoint(straight, extra=True))
