"""The exponential moving average of the weights, ``[train] ema_decay``: the formula of
``seq2seq_kit.ema``, the ``ema`` capability, validation and the saved best on the average
while training goes on from the weights, and exact resumption. (That every backend keeps
the reference's average is the conformance suite's ``test_ema_follows_the_reference``.)"""

import numpy as np
import pytest
from test_interrupt import assert_same_training
from test_training import small_config

import seq2seq_kit
from seq2seq_kit.backend import Backend
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import TrainConfig
from seq2seq_kit.ema import ema_update
from seq2seq_kit.errors import BackendError, ConfigError
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec, OptimizerSpec
from seq2seq_kit.trainer import evaluate, fit

SPEC = ModelSpec(16, 16, embedding_size=4, hidden_size=4)
SOURCES = [[3 + i % 5, 4 + i % 3] for i in range(8)]
TARGETS = [[5 + i % 4] * (1 + i % 2) for i in range(8)]


def test_the_average_starts_at_the_first_update_and_forgets_geometrically():
    rng = np.random.default_rng(0)
    history = [rng.normal(size=5) for _ in range(6)]  # the weights after updates 1..6
    decay, average = 0.8, np.full(5, np.nan)  # what it held before counts for nothing
    for t, weights in enumerate(history, start=1):
        ema_update(average, weights, decay, first=t == 1)
    # the closed form of the recursion: theta_1 weighs d^(T-1), theta_t (1 - d) d^(T-t)
    last = len(history)
    closed = decay ** (last - 1) * history[0] + sum(
        (1 - decay) * decay ** (last - t) * history[t - 1] for t in range(2, last + 1)
    )
    np.testing.assert_allclose(average, closed, rtol=1e-12)
    steady = np.full(5, 0.3, np.float32)
    ema_update(steady, np.full(5, 0.3, np.float32), 0.999, first=False)
    np.testing.assert_allclose(steady, 0.3, rtol=1e-6)


def test_bad_decays_and_a_backend_without_the_capability_are_refused(capsys, tmp_path):
    for decay in (1.0, -0.1, float("nan"), "high"):
        with pytest.raises(ValueError, match="OptimizerSpec.ema_decay must be in"):
            OptimizerSpec(ema_decay=decay)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    numpy = get_backend("numpy")
    plain = Backend("plain", "1", numpy.capabilities - {"ema"}, numpy.build)
    plain.create(SPEC)  # no average: no capability needed
    with pytest.raises(BackendError, match="lacks \\['ema'\\]"):
        plain.create(SPEC, optimizer=OptimizerSpec(ema_decay=0.9))
    with pytest.raises(SystemExit) as exit:
        main(["train", "--out", str(tmp_path / "m"), "--ema-decay", "1"])
    assert exit.value.code == 2 and "--ema-decay" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--ema-decay" in capsys.readouterr().out


def test_fit_refuses_an_average_of_a_model_that_keeps_none():
    class Bare:  # a model without ema_weights
        spec = SPEC

    config = TrainConfig(epochs=1, progress=False, ema_decay=0.9)
    with pytest.raises(TypeError, match="ema_decay = 0.9 needs a model .* Bare has none"):
        fit(Bare(), (SOURCES, TARGETS), None, config)


def fit_tiny(decay: float):
    """A tiny RNN trained 3 epochs on 8 pairs (4 updates an epoch), validated on them,
    nothing decided by validation (no patience, no plateau cuts); each epoch's record with
    the average and the weights the model holds when it arrives, and the model."""
    model = get_backend("numpy").create(SPEC, seed=1, optimizer=OptimizerSpec(ema_decay=decay))
    seen = []

    def on_epoch_end(record):
        seen.append((record, model.ema_weights(), model.get_weights()))

    config = TrainConfig(
        epochs=3, batch_size=2, learning_rate=0.03, progress=False, ema_decay=decay
    )
    pairs = (SOURCES, TARGETS)
    fit(model, pairs, pairs, config, on_epoch_end=on_epoch_end)
    return seen, model


def test_validation_scores_the_average_and_training_goes_on_from_the_weights():
    averaged, model = fit_tiny(0.9)
    plain, _ = fit_tiny(0.0)
    probe = get_backend("numpy").create(SPEC)
    for (record, average, weights), (other, _, unaveraged) in zip(averaged, plain, strict=True):
        # the weights train as without an average: the validation swapped them back whole
        for name, value in unaveraged.items():
            np.testing.assert_array_equal(weights[name], value, err_msg=name)
        probe.set_weights(average)
        assert evaluate(probe, SOURCES, TARGETS)[0] == record["valid_loss"]
        probe.set_weights(weights)
        assert evaluate(probe, SOURCES, TARGETS)[0] == other["valid_loss"] != record["valid_loss"]
    # the run ends holding the best average
    best = min(range(len(averaged)), key=lambda i: averaged[i][0]["valid_loss"])
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, averaged[best][1][name], err_msg=name)


def ema_config(epochs: int, **data):
    cfg = small_config(epochs)  # dropout, scheduled sampling and a plateau cut
    cfg.train.ema_decay = 0.9
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "model"
    return seq2seq_kit.train(ema_config(3), out=out), out


def test_the_directory_keeps_the_best_average_and_the_last_weights(averaged_run):
    translator, out = averaged_run
    saved = load_checkpoint(out, extra=True)
    valid = (
        [translator.source_vocab.encode(s, unknown="replace") for s, _ in translator.valid_pairs],
        [translator.target_vocab.encode(t, unknown="replace") for _, t in translator.valid_pairs],
    )
    history = saved.meta["history"]
    probe = get_backend("numpy").create(saved.spec)
    probe.set_weights(saved.weights)  # the model directory's: the best average
    assert evaluate(probe, *valid)[0] == min(record["valid_loss"] for record in history)
    average = {name: saved.extra["optimizer"][f"ema/{name}"] for name in saved.weights}
    probe.set_weights(average)  # the last average, kept with the optimizer state
    assert evaluate(probe, *valid)[0] == history[-1]["valid_loss"]
    probe.set_weights(saved.extra["last"])  # the last weights, for resuming: not validated
    assert evaluate(probe, *valid)[0] != history[-1]["valid_loss"]
    for name, value in translator.model.get_weights().items():
        np.testing.assert_array_equal(value, saved.weights[name], err_msg=name)


def test_without_validation_pairs_the_directory_keeps_the_last_average(tmp_path):
    seq2seq_kit.train(ema_config(2, valid_fraction=0.0), out=tmp_path / "m")
    saved = load_checkpoint(tmp_path / "m", extra=True)
    assert saved.meta["history"][-1]["evaluated_on"] == "train"
    for name, value in saved.weights.items():
        np.testing.assert_array_equal(value, saved.extra["optimizer"][f"ema/{name}"])
    assert any(not np.array_equal(v, saved.extra["last"][k]) for k, v in saved.weights.items())


def test_resume_restores_the_average_exactly(averaged_run, tmp_path):
    _, straight = averaged_run
    seq2seq_kit.train(ema_config(2), out=tmp_path / "split")
    seq2seq_kit.train(resume=tmp_path / "split", epochs=3)
    done = [load_checkpoint(path, extra=True) for path in (straight, tmp_path / "split")]
    assert_same_training(*done)  # the optimizer state, its average with it, included
    assert any(key.startswith("ema/") for key in done[1].extra["optimizer"])


def test_the_decay_is_fixed_on_resume(averaged_run):
    _, out = averaged_run
    cfg = ema_config(4)
    cfg.train.ema_decay = 0.99
    with pytest.raises(ConfigError, match="train.ema_decay is 0.9 in the saved run but 0.99"):
        seq2seq_kit.train(cfg, resume=out)


def test_kept_checkpoints_hold_the_average_their_validation_scored_and_resume(tmp_path):
    cfg = ema_config(3)
    cfg.train.keep_last = 3
    straight = tmp_path / "straight"
    translator = seq2seq_kit.train(cfg, out=straight)
    listing = load_checkpoint(straight).meta["checkpoints"]
    assert [entry["epoch"] for entry in listing] == [1, 2, 3]
    first = load_checkpoint(straight / listing[0]["path"], extra=True)
    # the checkpoint's weights are the average validation scored at that update: its loss
    # is the epoch's validation loss, and they are not the weights training went on from
    valid = (
        [translator.source_vocab.encode(s, unknown="replace") for s, _ in translator.valid_pairs],
        [translator.target_vocab.encode(t, unknown="replace") for _, t in translator.valid_pairs],
    )
    probe = get_backend("numpy").create(first.spec)
    probe.set_weights(first.weights)
    assert evaluate(probe, *valid)[0] == first.meta["history"][0]["valid_loss"]
    assert any(not np.array_equal(v, first.extra["last"][k]) for k, v in first.weights.items())
    # resumed from the first checkpoint, the run ends as the uninterrupted one
    resumed = tmp_path / "resumed"
    seq2seq_kit.train(resume=straight / listing[0]["path"], out=resumed, epochs=3)
    assert_same_training(
        load_checkpoint(straight, extra=True), load_checkpoint(resumed, extra=True)
    )


def test_info_says_the_kept_weights_are_the_average(averaged_run, capsys):
    _, out = averaged_run
    assert main(["info", "--model", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("weights:"))
    assert "kept the moving average (train.ema_decay = 0.9) of the weights of epoch" in line
