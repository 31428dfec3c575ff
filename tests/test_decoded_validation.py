"""Decoded validation (train.valid_metrics): the validation sources decoded and scored at
each validation, the scores in every record, selection and early stopping by them, their
sums over data-parallel ranks, resumption, and the summary of the weights kept."""

import copy
import logging
import threading

import numpy as np
import pytest
from test_training import small_config

import seq2seq_kit
from seq2seq_kit import cli, trainer
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.config import Config, TrainConfig
from seq2seq_kit.datasets import digits
from seq2seq_kit.decoded_validation import decoded_validation
from seq2seq_kit.decoding import OutputControls
from seq2seq_kit.errors import BackendError, ConfigError, OptionError
from seq2seq_kit.metrics import METRICS, group_references, score
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.runtime import SingleProcess
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.trainer import evaluate, fit

# The options: keys, rules and where they are documented.


def test_valid_metrics_are_kept_in_one_order_without_repeats():
    config = TrainConfig(valid_metrics=["ter", "chrf", "ter", "exact_match"])
    assert config.valid_metrics == ["chrf", "ter", "exact_match"]
    with pytest.raises(ValueError, match="valid_metrics"):
        TrainConfig(valid_metrics=["meteor"])


@pytest.mark.parametrize("metric", ["chrf", "ter", "exact_match", "token_error_rate"])
def test_early_stopping_on_a_decoded_metric_needs_it_in_valid_metrics(metric, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"early_stopping_metric = '{metric}'.*valid_metrics"):
        TrainConfig(early_stopping_metric=metric)
    assert TrainConfig(valid_metrics=[metric], early_stopping_metric=metric)
    args = ["--early-stopping-metric", metric, "--valid-metrics", "bleu"]
    assert cli.main(["train", "--out", str(tmp_path / "m"), *args]) == 2
    err = capsys.readouterr().err
    assert f"early_stopping_metric = '{metric}' is a decoded metric" in err
    assert f"--valid-metrics bleu,{metric}" in err
    assert not (tmp_path / "m").exists()


def test_every_new_key_is_in_the_config_reference_and_the_train_help(capsys):
    from test_docs import hooks

    table = hooks.config_reference()
    for key in ("valid_metrics", "valid_decode_limit", "valid_beam"):
        # fixed on resume: they decide the scores best_score compares
        assert f"| `train.{key}` |" in table and f"`train.{key}` | " in table
        row = next(line for line in table.splitlines() if f"`train.{key}`" in line)
        assert "| fixed |" in row
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in ("--valid-metrics A,B", "--valid-decode-limit N", "--valid-beam N"):
        assert flag in help_text
    assert "{loss,accuracy,chrf,bleu,ter,exact_match,cer,token_error_rate}" in help_text


# Selection by a decoded metric, with scores injected through the scoring callable.

PAIRS = ([[3 + i % 5, 4 + i % 3] for i in range(8)], [[5 + i % 4] * (1 + i % 2) for i in range(8)])


def tiny_numpy_model():
    return get_backend("numpy").create(ModelSpec(16, 16, embedding_size=4, hidden_size=4), seed=1)


class Scripted:
    """A decoded validation giving the next of ``values`` (for ``metric``) at each call,
    keeping the weights it scored."""

    def __init__(self, metric, values):
        self.metric, self.values, self.weights = metric, iter(values), []

    def __call__(self, model, group):
        self.weights.append(model.get_weights())
        return {self.metric: next(self.values), "exact_match": 0.25}


def falling_loss(monkeypatch):
    """Every validation's loss is lower than the one before: the loss would pick the last."""
    losses = iter(np.linspace(2.0, 0.1, 50))
    monkeypatch.setattr(trainer, "evaluate", lambda *args, **kwargs: (next(losses), 0.5))


@pytest.mark.parametrize(
    "metric, values, best", [("chrf", [10, 30, 25, 20, 15], 2), ("ter", [60, 40, 45, 41, 40], 2)]
)
def test_the_decoded_metric_picks_the_weights_and_patience_stops_on_it(
    monkeypatch, metric, values, best
):
    falling_loss(monkeypatch)
    scripted, validations = Scripted(metric, values), []
    config = TrainConfig(
        batch_size=2,
        epochs=10,
        progress=False,
        learning_rate=0.03,
        valid_metrics=[metric, "exact_match"],
        early_stopping_metric=metric,
        patience=3,
    )
    model = tiny_numpy_model()
    state = fit(model, PAIRS, PAIRS, config, on_validation=validations.append, decoded=scripted)
    assert state.stopped == "patience" and state.epoch == len(values)
    assert [r[f"valid_{metric}"] for r in state.history] == values
    assert [r["valid_exact_match"] for r in state.history] == [0.25] * len(values)
    assert [r["best"] for r in validations] == [i + 1 <= best for i in range(len(values))]
    assert [r[f"valid_{metric}"] for r in validations] == values
    # the weights the metric chose, not the lowest loss's (the last)
    for key, value in scripted.weights[best - 1].items():
        np.testing.assert_array_equal(model.get_weights()[key], value, err_msg=key)
    assert any(
        not np.array_equal(model.get_weights()[k], v) for k, v in scripted.weights[-1].items()
    )
    assert state.best_score == (values[best - 1] if metric == "ter" else -values[best - 1])
    assert state.best_validation == {
        "metric": metric,
        "update": 4 * best,
        "epoch": best,
        "step": 4,
        **{k: state.history[best - 1][k] for k in ("valid_loss", "valid_accuracy")},
        f"valid_{metric}": values[best - 1],
        "valid_exact_match": 0.25,
        "evaluated_on": "valid",
    }


def test_a_flat_decoded_metric_cuts_the_learning_rate(monkeypatch):
    falling_loss(monkeypatch)
    config = TrainConfig(
        batch_size=2,
        epochs=4,
        progress=False,
        learning_rate=0.04,
        valid_metrics=["bleu"],
        early_stopping_metric="bleu",
        lr_patience=2,
    )
    state = fit(tiny_numpy_model(), PAIRS, PAIRS, config, decoded=Scripted("bleu", [5, 5, 5, 9]))
    # the loss fell at every validation; BLEU was flat at the second and third
    assert [r["learning_rate"] for r in state.history] == [0.04, 0.04, 0.04, 0.02]


# The decoded validation itself: sources, references, limit, search.


def trained_translator(tmp_path, **train):
    """A small attention RNN on num2words, trained a few epochs: its outputs are partly
    right, so every metric is strictly between its bounds."""
    config = small_config(6)
    config.data.options = {"low": 0, "high": 300, "count": 120, "seed": 3}
    for key, value in train.items():
        setattr(config.train, key, value)
    return seq2seq_kit.train(config), config


def test_the_first_distinct_sources_are_decoded_against_all_their_references(tmp_path):
    translator, config = trained_translator(tmp_path)
    pairs = [("12", "twelve"), ("7", "seven"), ("12", "a dozen"), ("", ""), ("30", "thirty")]
    ids = [translator.source_vocab.encode(s) for s, _ in pairs]
    config.train.valid_metrics, config.train.valid_decode_limit = ["chrf", "exact_match"], 3
    validation = decoded_validation(config, translator, pairs, ids)
    assert validation.references == [["twelve", "a dozen"], ["seven"], [""]]
    assert validation.sources == [ids[0], ids[1], None]  # a source without tokens: blank
    assert validation.metrics == ("chrf", "exact_match")
    assert validation.search.beam == 1 and validation.search.n_best == 1
    outputs = translator.translate(["12", "7", ""])
    expected = score(outputs, validation.references)
    got = validation(translator.model, SingleProcess())
    assert got == {"chrf": expected["chrf"], "exact_match": expected["exact_match"]}
    config.train.valid_metrics = []
    assert decoded_validation(config, translator, pairs, ids) is None


def test_valid_beam_searches_with_the_decode_tables_options(tmp_path, monkeypatch):
    translator, config = trained_translator(tmp_path)
    config.train.valid_metrics, config.train.valid_beam = ["chrf"], 3
    config.decode.length_penalty, config.decode.max_length = 0.6, 7
    sources, references = group_references(translator.valid_pairs)
    ids = [translator.source_vocab.encode(s) for s, _ in translator.valid_pairs]
    validation = decoded_validation(config, translator, translator.valid_pairs, ids)
    assert (validation.search.beam, validation.search.length_penalty) == (3, 0.6)
    assert validation.search.max_length == 7
    outputs = translator.translate(sources, beam=3, length_penalty=0.6, max_length=7)
    assert validation(translator.model, SingleProcess()) == {
        "chrf": score(outputs, references)["chrf"]
    }
    no_beam = get_backend("numpy").capabilities - {"beam"}
    monkeypatch.setattr(type(translator), "capabilities", property(lambda self: no_beam))
    with pytest.raises(BackendError, match=r"train.valid_beam = 3: backend 'numpy'.*'beam'"):
        decoded_validation(config, translator, translator.valid_pairs, ids)


def test_validation_searches_with_the_output_controls_and_never_samples(tmp_path):
    translator, config = trained_translator(tmp_path)
    config.train.valid_metrics, config.train.valid_beam = ["chrf"], 2
    config.decode.sampling, config.decode.temperature, config.decode.seed = True, 1.5, 3
    config.decode.min_length, config.decode.banned_tokens = 4, ["x"]
    ids = [translator.source_vocab.encode(s) for s, _ in translator.valid_pairs]
    validation = decoded_validation(config, translator, translator.valid_pairs, ids)
    assert validation.search.sampling is None and validation.search.beam == 2
    banned = translator.target_vocab.token_id("x")
    assert validation.search.controls == OutputControls(min_length=4, banned_ids=(banned,))
    config.decode.banned_tokens = ["<s>"]
    with pytest.raises(OptionError, match="special"):
        decoded_validation(config, translator, translator.valid_pairs, ids)


# Data-parallel: each rank decodes its share and the counts are summed.


class ThreadGroup:
    """The ranks of a data-parallel run as threads of one process: ``all_reduce`` sums
    what every rank gives, as torch.distributed's does."""

    launcher = "threads"

    def __init__(self, world_size):
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size)
        self.given = [None] * world_size

    def rank(self, rank):
        group = copy.copy(self)
        group.rank = rank
        return group

    def all_reduce(self, values):
        self.given[self.rank] = list(values)
        self.barrier.wait()
        total = [sum(column) for column in zip(*self.given, strict=True)]
        self.barrier.wait()  # every rank has read before the next call writes
        return total


class CountingModel:
    """A model that counts the sources it encodes."""

    def __init__(self, model):
        self.model, self.encoded = model, 0

    def encode(self, src_ids, src_lengths):
        self.encoded += len(src_ids)
        return self.model.encode(src_ids, src_lengths)

    def __getattr__(self, name):
        return getattr(self.model, name)


def partly_trained_digits(tmp_path):
    """The digits model after 12 epochs at learning rate 0.02: five of the nine words right
    (at seed 0), validated on the digits with a second reference for three of them."""
    pairs = [*digits().pairs, ("1", "One"), ("7", "seven!"), ("3", "tree")]
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    config = Config()
    config.data.valid = str(tmp_path / "valid.tsv")
    config.train.learning_rate, config.train.epochs, config.train.progress = 0.02, 12, False
    return seq2seq_kit.train(config), config


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_ranks_shares_sum_to_the_single_process_scores(tmp_path, world_size):
    translator, config = partly_trained_digits(tmp_path)
    config.train.valid_metrics = list(METRICS)
    pairs = translator.valid_pairs
    ids = [translator.source_vocab.encode(s) for s, _ in pairs]
    validation = decoded_validation(config, translator, pairs, ids)
    assert [len(r) for r in validation.references] == [2, 1, 2, 1, 1, 1, 2, 1, 1]
    single = validation(translator.model, SingleProcess())
    for name in ("chrf", "ter", "exact_match", "cer", "token_error_rate"):
        assert 0 < single[name] < (1 if name in ("exact_match", "cer") else 100), name
    shared, results = ThreadGroup(world_size), [None] * world_size
    models = []  # a model a rank, as processes have
    for _ in range(world_size):
        model = get_backend("numpy").create(translator.model.spec)
        model.set_weights(translator.model.get_weights())
        models.append(CountingModel(model))

    def rank(r):
        results[r] = validation(models[r], shared.rank(r))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    n = len(validation.sources)
    assert [m.encoded for m in models] == [len(range(r, n, world_size)) for r in range(world_size)]
    for result in results:
        assert result == results[0]  # every rank decides alike
        assert result.keys() == single.keys()
        for name, value in single.items():
            assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# Training runs: records, log lines, resumption, the summary.


def digits_with_validation(tmp_path):
    """The digits pairs with themselves as validation pairs: at learning rate 0.02 the
    model writes every word right (chrF 100) from epoch 15 on, while the loss keeps
    falling, so the lowest loss and the best chrF fall on different epochs."""
    valid = tmp_path / "valid.tsv"
    valid.write_text("".join(f"{s}\t{t}\n" for s, t in digits().pairs))
    return [
        "--data", "digits", "--valid", str(valid), "--learning-rate", "0.02",
        "--valid-metrics", "chrf,exact_match", "--early-stopping-metric", "chrf",
        "--patience", "5", "--no-progress",
    ]  # fmt: skip


def test_a_run_stopped_early_by_chrf_keeps_the_chrf_best_weights(tmp_path, capsys, caplog):
    out = tmp_path / "m"
    with caplog.at_level(logging.INFO, logger="seq2seq_kit"):
        assert cli.main(["train", *digits_with_validation(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = load_checkpoint(out)
    history, trainer_state = saved.meta["history"], saved.meta["trainer"]
    chrf = [r["valid_chrf"] for r in history]
    losses = [r["valid_loss"] for r in history]
    best = int(np.argmax(chrf))  # the first of the best
    assert trainer_state["stopped"] == "patience" and len(history) == best + 1 + 5
    assert int(np.argmin(losses)) != best  # the loss would have kept other weights
    assert trainer_state["best_score"] == -chrf[best]
    kept = trainer_state["best_validation"]
    assert (kept["metric"], kept["epoch"], kept["valid_chrf"]) == ("chrf", best + 1, chrf[best])
    # the directory's weights decode to the chrF recorded for them, with their loss
    model = seq2seq_kit.load(out)
    sources, references = group_references(digits().pairs)
    assert score(model.translate(sources), references)["chrf"] == chrf[best]
    src = [model.source_vocab.encode(s) for s, _ in digits().pairs]
    tgt = [model.target_vocab.encode(t) for _, t in digits().pairs]
    assert evaluate(model.model, src, tgt)[0] == pytest.approx(losses[best], rel=1e-6)
    assert evaluate(model.model, src, tgt)[0] > min(losses)
    # the summary names the weights kept, the metric and their figures, not the last epoch's
    record = history[best]
    assert (
        f"kept the weights of epoch {best + 1} (update {record['updates']}), the best by "
        f"validation chrF: loss {record['valid_loss']:.4f}, token accuracy "
        f"{record['valid_accuracy']:.3f}; chrF {record['valid_chrf']:.2f}, exact match "
        f"{record['valid_exact_match']:.4f}"
    ) in printed.splitlines()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert f"chrF {history[0]['valid_chrf']:.2f}, exact match" in lines[0]


def test_the_summary_of_a_run_without_validation_pairs_says_it_kept_the_last(tmp_path, capsys):
    args = ["train", "--epochs", "3", "--valid-metrics", "cer", "--no-progress"]
    assert cli.main([*args, "--out", str(tmp_path / "m")]) == 0
    history = load_checkpoint(tmp_path / "m").meta["history"]
    assert history[-1]["evaluated_on"] == "train" and "valid_cer" in history[-1]
    assert (
        f"kept the last weights (update 15; no validation pairs to choose by); on the "
        f"training pairs at update 15: loss {history[-1]['valid_loss']:.4f}"
    ) in capsys.readouterr().out


def test_decoded_scores_reach_the_hooks_and_the_history(tmp_path, monkeypatch):
    seen = {"on_validation": [], "on_epoch_end": []}

    class Recorder:
        @seq2seq_kit.hookimpl
        def on_validation(self, record):
            seen["on_validation"].append(record)

        @seq2seq_kit.hookimpl
        def on_epoch_end(self, record):
            seen["on_epoch_end"].append(record)

    from seq2seq_kit.plugins import build_registry

    registry = build_registry(extra_plugins=(Recorder(),))
    monkeypatch.setattr("seq2seq_kit.training.registry", lambda: registry)
    config = small_config(2)
    config.train.valid_metrics, config.train.valid_every = ["bleu", "token_error_rate"], 4
    translator = seq2seq_kit.train(config, out=tmp_path / "m")
    keys = ("valid_bleu", "valid_token_error_rate")
    validations = seen["on_validation"]
    assert [r["update"] for r in validations] == [4, 6, 8, 12]  # 6 updates an epoch
    assert all(set(keys) <= r.keys() for r in validations)
    assert [r["epoch"] for r in seen["on_epoch_end"]] == [1, 2]
    history = load_checkpoint(tmp_path / "m").meta["history"]
    for epoch_end, record, saved in zip(
        (validations[1], validations[3]), seen["on_epoch_end"], history, strict=True
    ):
        assert [record[k] for k in keys] == [epoch_end[k] for k in keys] == [saved[k] for k in keys]
    assert translator.history == history
    assert translator.best_validation["metric"] == "loss"


def test_resuming_a_run_selected_by_chrf_repeats_the_uninterrupted_run(tmp_path):
    def config(epochs):
        config = small_config(epochs)
        config.train.valid_metrics, config.train.early_stopping_metric = ["chrf"], "chrf"
        return config

    straight = seq2seq_kit.train(config(8), out=tmp_path / "straight")
    seq2seq_kit.train(config(5), out=tmp_path / "split")
    resumed = seq2seq_kit.train(resume=tmp_path / "split", epochs=8)
    assert [r["valid_chrf"] for r in resumed.history] == [r["valid_chrf"] for r in straight.history]
    assert len({r["valid_chrf"] for r in straight.history}) > 2  # the scores moved
    for a, b in zip(straight.history, resumed.history, strict=True):
        for key in ("train_loss", "valid_loss", "learning_rate"):
            assert a[key] == b[key], (a["epoch"], key)
    done = [load_checkpoint(tmp_path / d, extra=True) for d in ("straight", "split")]
    for key in ("best_score", "best_validation", "bad_epochs", "plateau_epochs"):
        assert done[0].meta["trainer"][key] == done[1].meta["trainer"][key], key
    for key, value in done[0].weights.items():
        np.testing.assert_array_equal(value, done[1].weights[key], err_msg=key)


def test_a_stop_between_validations_leaves_the_decoded_selection_as_it_was(monkeypatch):
    """Resumed after a stop at any update, a run selected by a decoded metric repeats the
    uninterrupted one: the stop's own validation is recorded but chooses nothing."""

    def scored(model, group):
        # by update: flat, then better from update 8; at a stop between validations, a
        # score better than any, which must not count
        update = int(model.optimizer_state()["step"])
        due = update % 4 == 0 or update % 3 == 0
        return {"chrf": (10.0 if update < 8 else 20.0) if due else 99.0}

    options = {"batch_size": 2, "progress": False, "epochs": 3, "learning_rate": 0.03}
    options |= {"valid_every": 3, "lr_patience": 1, "valid_metrics": ["chrf"]}
    options |= {"early_stopping_metric": "chrf"}
    straight = tiny_numpy_model()
    done = fit(straight, PAIRS, PAIRS, TrainConfig(**options), decoded=scored)
    assert done.best_validation["update"] == 8
    for stop in (5, 7, 10):
        model, saved = tiny_numpy_model(), []

        def save(state, model=model, saved=saved):
            saved[:] = [copy.deepcopy(state), model.get_weights(), model.optimizer_state()]

        config = TrainConfig(**options, max_updates=stop)
        fit(model, PAIRS, PAIRS, config, save=save, decoded=scored)
        state, last, optimizer = saved
        assert state.history[-1]["at_stop"] and state.history[-1]["valid_chrf"] == 99.0
        assert state.best_score != -99.0
        model = tiny_numpy_model()
        model.set_weights(last)
        model.set_optimizer_state(optimizer)
        state = fit(model, PAIRS, PAIRS, TrainConfig(**options), state=state, decoded=scored)
        for key in ("best_score", "best_validation", "learning_rate", "bad_epochs"):
            assert getattr(state, key) == getattr(done, key), (stop, key)
        for key, value in straight.get_weights().items():
            np.testing.assert_allclose(model.get_weights()[key], value, atol=1e-7, rtol=0)


def test_a_backend_without_beam_is_refused_before_training(tmp_path, monkeypatch):
    from seq2seq_kit.translator import Translator

    no_beam = get_backend("numpy").capabilities - {"beam"}
    monkeypatch.setattr(Translator, "capabilities", property(lambda self: no_beam))
    config = Config()
    config.train.epochs, config.train.valid_metrics, config.train.valid_beam = 2, ["chrf"], 2
    with pytest.raises(BackendError, match="train.valid_beam = 2"):
        seq2seq_kit.train(config, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_valid_metrics_cannot_change_on_resume(tmp_path):
    config = small_config(2)
    config.train.valid_metrics = ["chrf"]
    seq2seq_kit.train(config, out=tmp_path / "m")
    more = Config.model_validate({"train": {"epochs": 3, "valid_metrics": ["chrf", "bleu"]}})
    with pytest.raises(ConfigError, match=r"train.valid_metrics is \['chrf'\] in the saved run"):
        seq2seq_kit.train(resume=tmp_path / "m", config=more)


def test_early_stopping_metric_on_resume_is_checked_against_the_saved_metrics(tmp_path, capsys):
    config = small_config(2)
    config.train.valid_metrics, config.train.early_stopping_metric = ["chrf", "ter"], "chrf"
    seq2seq_kit.train(config, out=tmp_path / "m")
    resume = ["train", "--resume", str(tmp_path / "m")]
    # the saved value is accepted: the run's valid_metrics compute it
    assert cli.main([*resume, "--epochs", "3", "--early-stopping-metric", "chrf"]) == 0
    capsys.readouterr()
    # another is refused as a key fixed on resume, not as a metric nothing computes
    assert cli.main([*resume, "--epochs", "4", "--early-stopping-metric", "ter"]) == 2
    err = capsys.readouterr().err
    assert "early_stopping_metric" in err and "saved run" in err and "does not compute" not in err


def test_fit_refuses_a_decoded_early_stopping_metric_without_the_scorer():
    config = TrainConfig(valid_metrics=["chrf"], early_stopping_metric="chrf", progress=False)
    with pytest.raises(ValueError, match="early_stopping_metric = 'chrf'.*decoded="):
        fit(tiny_numpy_model(), PAIRS, PAIRS, config)


def test_the_summary_of_runs_without_a_recorded_validation():
    from seq2seq_kit.cli.train import kept_line
    from seq2seq_kit.run_record import RunRecord

    before = RunRecord(trainer={"updates": 3, "best_score": None})
    assert kept_line(None, before) == (
        "kept the last weights (update 3): the run stopped before any validation could "
        "choose weights"
    )
    # a run saved by a version that did not record the validation, then resumed
    older = RunRecord(
        trainer={"updates": 9, "best_score": -0.75},
        config={"train": {"early_stopping_metric": "accuracy"}},
    )
    assert kept_line(None, older).startswith(
        "kept the weights of the best validation by accuracy (score -0.7500"
    )
