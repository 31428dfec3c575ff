"""The trainer: resumption, best/last checkpoints, plateau schedule, scheduled sampling."""

import numpy as np
import pytest

import seq2seq_kit
from seq2seq_kit import trainer
from seq2seq_kit.batching import make_batch
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.config import Config, TrainConfig
from seq2seq_kit.errors import TrainingError
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.trainer import TrainerState, evaluate, scheduled_sampling
from seq2seq_kit.trainer.early_stopping import track_best as _track_best


def small_config(epochs):
    cfg = Config()
    cfg.data.source = "num2words"
    cfg.data.options = {"low": 0, "high": 200, "count": 60, "seed": 3}
    cfg.data.valid_fraction = 0.25
    cfg.model.hidden_size, cfg.model.embedding_size = 16, 8
    cfg.model.attention, cfg.model.dropout = "dot", 0.2
    cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate = epochs, 8, 0.01
    cfg.train.teacher_forcing, cfg.train.lr_patience = 0.8, 1
    cfg.train.progress, cfg.train.save_seconds = False, 0.0
    return cfg


def test_resume_gives_the_uninterrupted_result(tmp_path):
    straight = seq2seq_kit.train(small_config(8), out=tmp_path / "straight")
    seq2seq_kit.train(small_config(5), out=tmp_path / "split")
    resumed = seq2seq_kit.train(resume=tmp_path / "split", epochs=8)
    assert len(resumed.history) == 8
    for a, b in zip(straight.history, resumed.history, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy", "learning_rate"):
            assert a[key] == b[key], (a["epoch"], key)
    done = [load_checkpoint(tmp_path / d, extra=True) for d in ("straight", "split")]
    for name in ("last", "optimizer"):
        for key, value in done[0].extra[name].items():
            np.testing.assert_array_equal(value, done[1].extra[name][key], err_msg=key)
    for key, value in done[0].weights.items():
        np.testing.assert_array_equal(value, done[1].weights[key], err_msg=key)


def test_best_and_last_weights(tmp_path):
    translator = seq2seq_kit.train(small_config(8), out=tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m", extra=True)
    losses = [r["valid_loss"] for r in translator.history]
    best_epoch = int(np.argmin(losses)) + 1
    assert ckpt.meta["trainer"]["best_score"] == pytest.approx(min(losses))
    # the directory's weights are the best epoch's; the returned model holds them too
    for key, value in translator.model.get_weights().items():
        np.testing.assert_array_equal(value, ckpt.weights[key])
    if best_epoch != len(losses):
        assert any(not np.array_equal(ckpt.weights[k], ckpt.extra["last"][k]) for k in ckpt.weights)


def test_plateau_halves_the_learning_rate_and_patience_stops():
    model = get_backend("numpy").create(ModelSpec(6, 6, hidden_size=4))
    config = TrainConfig(learning_rate=0.1, lr_patience=2, lr_factor=0.5, patience=5)
    state = TrainerState(learning_rate=0.1)
    stops, rates = [], []
    for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99]:
        stops.append(_track_best(model, state, config, loss, has_valid=True))
        rates.append(state.learning_rate)
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert stops == [False] * 6 + [True]
    assert state.best_score == 0.9


def test_accuracy_scores_drive_best_weights_and_plateaus():
    model = get_backend("numpy").create(ModelSpec(6, 6, hidden_size=4))
    config = TrainConfig(learning_rate=0.1, lr_patience=2, patience=3)
    state = TrainerState(learning_rate=0.1)
    for accuracy in [0.5, 0.7, 0.6, 0.7]:  # a tie is no improvement
        assert not _track_best(model, state, config, -accuracy, has_valid=True)
    assert state.best_score == -0.7
    assert state.bad_epochs == 2 and state.learning_rate == 0.05
    assert _track_best(model, state, config, -0.69, has_valid=True)


def test_trainer_state_from_a_checkpoint_that_saved_best_loss():
    saved = {"epoch": 3, "rng": None, "learning_rate": 0.01, "best_loss": 0.5}
    saved |= {"bad_epochs": 1, "plateau_epochs": 0}
    state = TrainerState.from_json(saved, [])
    assert state.best_score == 0.5
    assert state.step == 0 and state.epoch_rng is None  # an epoch boundary


def test_unknown_early_stopping_metric_is_refused():
    with pytest.raises(ValueError, match="early_stopping_metric"):
        TrainConfig().early_stopping_metric = "acc"


def test_best_weights_by_validation_accuracy(tmp_path):
    from num2words import num2words

    for name, numbers in (("train", range(0, 200, 3)), ("valid", range(1, 200, 9))):
        rows = "".join(f"{n}\t{num2words(n)}\n" for n in numbers)
        (tmp_path / f"{name}.tsv").write_text(rows)
    config = small_config(8)
    config.data.valid_fraction = None  # a validation file replaces the held-out share
    config.data.source, config.data.valid = str(tmp_path / "train.tsv"), str(tmp_path / "valid.tsv")
    config.train.early_stopping_metric = "accuracy"
    translator = seq2seq_kit.train(config, out=tmp_path / "m")
    accuracies = [r["valid_accuracy"] for r in translator.history]
    losses = [r["valid_loss"] for r in translator.history]
    ckpt = load_checkpoint(tmp_path / "m", extra=True)
    assert ckpt.meta["trainer"]["best_score"] == pytest.approx(-max(accuracies))
    # the model returned holds the weights of the first epoch with the highest accuracy
    pairs = [line.split("\t") for line in (tmp_path / "valid.tsv").read_text().splitlines()]
    src = [translator.source_vocab.encode(s) for s, _ in pairs]
    tgt = [translator.target_vocab.encode(t) for _, t in pairs]
    best = translator.history[int(np.argmax(accuracies))]
    # otherwise the last (or the lowest-loss) weights would pass as well
    assert best["epoch"] not in (len(accuracies), int(np.argmin(losses)) + 1)
    loss, accuracy = evaluate(translator.model, src, tgt)
    assert accuracy == best["valid_accuracy"]
    assert loss == pytest.approx(best["valid_loss"], rel=1e-6)


def test_scheduled_sampling_swaps_decoder_inputs_for_predictions():
    model = get_backend("numpy").create(ModelSpec(8, 9, hidden_size=4), seed=1)
    batch = make_batch([[4, 5], [6]], [[4, 5, 6, 7, 8], [5]])
    predicted = model.log_probs(batch).argmax(axis=2)
    same = scheduled_sampling(model, batch, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(same.tgt_in, batch.tgt_in)
    mixed = scheduled_sampling(model, batch, 1e-9, np.random.default_rng(0))
    assert (mixed.tgt_in[:, 0] == 1).all()  # BOS stays
    np.testing.assert_array_equal(mixed.tgt_in[0, 1:], predicted[0, :-1])
    np.testing.assert_array_equal(
        mixed.tgt_in[1],
        batch.tgt_in[1][:1].tolist() + [predicted[1, 0]] + batch.tgt_in[1, 2:].tolist(),
    )
    np.testing.assert_array_equal(mixed.tgt_out, batch.tgt_out)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_a_non_finite_training_loss_stops_before_anything_is_saved(tmp_path):
    config = small_config(30)
    config.train.learning_rate = 1e300  # the first step sends the weights to infinity
    with pytest.raises(TrainingError) as caught:
        seq2seq_kit.train(config, out=tmp_path / "m")
    message = str(caught.value)
    assert message.startswith("epoch 1 step 2: the training loss is nan (not finite")
    assert message.endswith(f"nothing was written to {tmp_path / 'm'}")
    assert not (tmp_path / "m").exists()


def test_a_non_finite_loss_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    cls = type(get_backend("numpy").create(ModelSpec(4, 4, hidden_size=2)))
    original, calls = cls.train_step, iter(range(1, 10**6))

    def train_step(self, batch):
        loss = original(self, batch)
        return float("inf") if next(calls) == 2 * 6 + 4 else loss  # epoch 3, step 4

    monkeypatch.setattr(cls, "train_step", train_step)
    with pytest.raises(TrainingError, match="^epoch 3 step 4: the training loss is inf") as caught:
        seq2seq_kit.train(small_config(5), out=tmp_path / "m")
    assert str(caught.value).endswith(
        f"{tmp_path / 'm'} keeps the checkpoint written after epoch 2"
    )
    saved = load_checkpoint(tmp_path / "m", extra=True)
    assert saved.meta["trainer"]["epoch"] == 2 and len(saved.meta["history"]) == 2
    for weights in (saved.weights, saved.extra["last"]):
        assert all(np.isfinite(w).all() for w in weights.values())


def test_a_non_finite_validation_loss_stops_training(monkeypatch):
    monkeypatch.setattr(trainer, "evaluate", lambda *args, **kwargs: (float("nan"), 0.0))
    with pytest.raises(TrainingError, match=r"^epoch 1 step 6: the validation loss is nan"):
        seq2seq_kit.train(small_config(2))


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    # should a non-finite weight get past the loss checks, the save still refuses it
    monkeypatch.setattr(trainer, "evaluate", lambda model, src, tgt, group=None: (1.0, 0.5))
    cls = type(get_backend("numpy").create(ModelSpec(4, 4, hidden_size=2)))
    original, calls = cls.train_step, iter(range(1, 10**6))

    def train_step(self, batch):
        loss = original(self, batch)
        if next(calls) == 6:  # the last step of epoch 1
            weights = self.get_weights()
            weights["decoder.output.bias"][0] = np.inf
            self.set_weights(weights)
        return loss

    monkeypatch.setattr(cls, "train_step", train_step)
    match = r"^epoch 1 step 6: the weights hold non-finite values \(decoder.output.bias\)"
    with pytest.raises(TrainingError, match=match):
        seq2seq_kit.train(small_config(2), out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("seconds, logged", [(3600.0, [1, 20]), (0.0, list(range(1, 21)))])
def test_epoch_lines_at_most_one_per_log_seconds(caplog, seconds, logged):
    import logging

    config = Config()
    config.train.epochs, config.train.progress, config.train.log_seconds = 20, False, seconds
    with caplog.at_level(logging.INFO, logger="seq2seq_kit"):
        seq2seq_kit.train(config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [int(line.split()[1].split("/")[0]) for line in lines] == logged
