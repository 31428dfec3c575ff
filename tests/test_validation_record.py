"""Every validation of a run, within epochs too, in model.json (``meta.validations``), in
curves.png, and the validation whose weights a directory holds in ``info`` and the server's
model listing; a model.json saved before validations were recorded still loads, resumes
and plots."""

import json
import signal
import sys

import pytest
from forged import forge
from test_interrupt import signal_after_steps
from test_training import small_config

import seq2seq_kit
from seq2seq_kit import cli
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.datasets import digits
from seq2seq_kit.run_record import RunRecord
from seq2seq_kit.trainer import epoch_records, evaluate


def without_flags(validation):
    return {k: v for k, v in validation.items() if k not in ("best", "at_stop")}


@pytest.fixture(scope="module")
def chrf_run(tmp_path_factory):
    """digits validated on its own pairs every 3 updates (5 updates an epoch), kept by
    chrF with patience 5, keeping the last 2 checkpoints: the loss keeps falling after the
    best chrF, so the two disagree on the weights."""
    tmp = tmp_path_factory.mktemp("chrf")
    valid = tmp / "valid.tsv"
    valid.write_text("".join(f"{s}\t{t}\n" for s, t in digits().pairs))
    args = [
        "--data", "digits", "--valid", str(valid), "--learning-rate", "0.02",
        "--valid-metrics", "chrf,exact_match", "--early-stopping-metric", "chrf",
        "--patience", "5", "--valid-every", "3", "--keep-last", "2", "--no-progress",
    ]  # fmt: skip
    assert cli.main(["train", *args, "--out", str(tmp / "m")]) == 0
    return tmp / "m"


def test_every_validation_is_in_model_json_within_epochs_too(chrf_run):
    meta = load_checkpoint(chrf_run).meta
    validations, epochs = meta["validations"], meta["history"]
    updates = [v["update"] for v in validations]
    # every 3 updates and at each epoch end (5 updates an epoch), each once, in order
    assert updates == sorted({*range(3, updates[-1] + 1, 3), *range(5, updates[-1] + 1, 5)})
    assert meta["trainer"]["stopped"] == "patience" and updates[-1] == meta["trainer"]["updates"]
    assert len(validations) > len(epochs) and all(v["evaluated_on"] == "valid" for v in validations)
    assert all(isinstance(v["valid_chrf"], float) for v in validations)
    # the history keeps one record per epoch; each epoch end's figures are its validation's
    assert epoch_records(epochs) == epochs
    for record in epochs:
        (at_end,) = [v for v in validations if v["update"] == record["updates"]]
        for key in ("valid_loss", "valid_accuracy", "valid_chrf", "valid_exact_match"):
            assert at_end[key] == record[key], (record["epoch"], key)
    # the kept weights are of the last validation that bettered chrF, not the lowest loss
    best = [v for v in validations if v["best"]][-1]
    assert meta["trainer"]["best_validation"] == {"metric": "chrf", **without_flags(best)}
    assert best["valid_chrf"] == max(v["valid_chrf"] for v in validations)
    assert best["valid_loss"] > min(v["valid_loss"] for v in validations)
    assert best["update"] % 5  # within an epoch: the history alone could not say
    assert seq2seq_kit.load(chrf_run).validations == validations


def test_the_hooks_get_what_model_json_records(tmp_path, monkeypatch):
    seen = {"on_validation": [], "on_train_end": []}

    class Recorder:
        @seq2seq_kit.hookimpl
        def on_validation(self, record):
            seen["on_validation"].append(record)

        @seq2seq_kit.hookimpl
        def on_train_end(self, history, validations, out_dir):
            seen["on_train_end"].append((history, validations, out_dir))

    from seq2seq_kit.plugins import build_registry

    registry = build_registry(extra_plugins=(Recorder(),))
    monkeypatch.setattr("seq2seq_kit.training.registry", lambda: registry)
    config = small_config(2)
    config.train.valid_every = 4
    seq2seq_kit.train(config, out=tmp_path / "m")
    meta = load_checkpoint(tmp_path / "m").meta
    assert [v["update"] for v in meta["validations"]] == [4, 6, 8, 12]  # 6 updates an epoch
    assert meta["validations"] == seen["on_validation"]
    ((history, validations, out_dir),) = seen["on_train_end"]
    assert (history, validations, out_dir) == (
        meta["history"],
        meta["validations"],
        str(tmp_path / "m"),
    )


def test_a_resumed_run_records_the_validations_of_the_uninterrupted_one(tmp_path):
    def config(**train):
        config = small_config(3)
        config.train.valid_every, config.train.valid_metrics = 4, ["chrf"]
        for key, value in train.items():
            setattr(config.train, key, value)
        return config

    straight = seq2seq_kit.train(config(), out=tmp_path / "straight")
    # stopped at update 10, between validation points (4, 6, 8, 12...): one made for the stop
    seq2seq_kit.train(config(max_updates=10), out=tmp_path / "split")
    stopped = load_checkpoint(tmp_path / "split").meta["validations"]
    assert [(v["update"], v["at_stop"]) for v in stopped][-2:] == [(8, False), (10, True)]
    resumed = seq2seq_kit.train(config(max_updates=0), resume=tmp_path / "split")
    made = [v for v in resumed.validations if not v["at_stop"]]
    assert made == straight.validations and len({v["valid_chrf"] for v in made}) > 1
    assert [v["update"] for v in resumed.validations if v["at_stop"]] == [10]


def test_a_model_json_saved_before_validations_were_recorded(tmp_path, capsys):
    """As an earlier version wrote it: no meta.validations (its field digests match)."""
    out = tmp_path / "m"
    seq2seq_kit.train(small_config(2), out=out)
    doc = json.loads((out / "model.json").read_text())
    del doc["meta"]["validations"]
    forge(out / "model.json", doc)
    model = seq2seq_kit.load(out)
    assert model.validations is None and len(model.history) == 2
    assert RunRecord.from_dict(model.meta).to_dict() == doc["meta"]
    assert cli.main(["info", "--model", str(out)]) == 0
    assert "trained:      2 epochs (12 updates) with backend numpy" in capsys.readouterr().out
    # resumed, it records none (a list missing the first run's would mislead): the epochs
    # in the history say what there is
    resumed = seq2seq_kit.train(resume=out, epochs=3)
    assert resumed.validations is None and len(resumed.history) == 3
    assert "validations" not in load_checkpoint(out).meta


# info and the server's listing: the validation the weights are of


def test_info_says_which_validation_the_kept_weights_are_of(chrf_run, capsys):
    meta = load_checkpoint(chrf_run).meta
    kept = meta["trainer"]["best_validation"]
    assert cli.main(["info", "--model", str(chrf_run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept_validation"] == kept
    assert summary["validations"] == len(meta["validations"])
    assert cli.main(["info", "--model", str(chrf_run)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"weights:      kept the weights of update {kept['update']} (epoch {kept['epoch']} "
        f"step {kept['step']}), the best by validation chrF: loss {kept['valid_loss']:.4f}, "
        f"token accuracy {kept['valid_accuracy']:.3f}; chrF {kept['valid_chrf']:.2f}, "
        f"exact match {kept['valid_exact_match']:.4f}"
    ) in printed.splitlines()
    assert (
        f"({meta['trainer']['updates']} updates, {len(meta['validations'])} validations)" in printed
    )


def test_a_kept_checkpoint_is_of_its_own_validation(chrf_run, capsys):
    meta = load_checkpoint(chrf_run).meta
    entry = meta["checkpoints"][0]
    (own,) = [v for v in meta["validations"] if v["update"] == entry["update"]]
    assert not own["best"]  # kept as one of the last, not as the best
    folder = chrf_run / entry["path"]
    expected = {"metric": "chrf", **without_flags(own)}
    checkpoint = seq2seq_kit.load(folder)
    assert checkpoint.best_validation == expected != meta["trainer"]["best_validation"]
    # its weights are that validation's: their loss on the validation pairs is its loss
    pairs = digits().pairs
    sources = [checkpoint.source_vocab.encode(s) for s, _ in pairs]
    targets = [checkpoint.target_vocab.encode(t) for _, t in pairs]
    loss, accuracy = evaluate(checkpoint.model, sources, targets)
    assert loss == pytest.approx(own["valid_loss"], rel=1e-6)
    assert accuracy == pytest.approx(own["valid_accuracy"], rel=1e-6)
    assert cli.main(["info", "--model", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_validation"] == expected
    assert cli.main(["info", "--model", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(
        f"checkpoint:   kept at update {own['update']} (epoch {own['epoch']} step "
        f"{own['step']}), chrF {own['valid_chrf']:.4f}"  # the figure, not the negated score
    )
    assert lines[at + 1] == (
        f"              on the validation pairs: loss {own['valid_loss']:.4f}, token accuracy "
        f"{own['valid_accuracy']:.3f}; chrF {own['valid_chrf']:.2f}, exact match "
        f"{own['valid_exact_match']:.4f}"
    )
    assert not any(line.startswith("weights:") for line in lines)


def test_an_average_is_of_no_one_validation(chrf_run, tmp_path, capsys):
    averaged = tmp_path / "avg"
    assert (
        cli.main(["average", "--model", str(chrf_run), "--last", "2", "--out", str(averaged)]) == 0
    )
    capsys.readouterr()
    assert seq2seq_kit.load(averaged).best_validation is None
    assert cli.main(["info", "--model", str(averaged), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_validation"] is None
    assert cli.main(["info", "--model", str(averaged)]) == 0
    printed = capsys.readouterr().out
    assert "averaged:     2 checkpoints" in printed and "weights:" not in printed


# curves.png


def curves(ax):
    """The labelled lines of a panel, by label (the epoch ends' lines have none)."""
    return {line.get_label(): line for line in ax.get_lines() if line.get_label()[0] != "_"}


def top_axis(ax):
    (top,) = ax.child_axes
    return list(top.get_xticks()), [label.get_text() for label in top.get_xticklabels()]


@pytest.fixture
def figures():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from seq2seq_kit.plots import history_figure

    made = []

    def figure(history, validations=None):
        made.append(history_figure(history, validations))
        return made[-1]

    yield figure
    for fig in made:
        plt.close(fig)


def test_curves_by_update_show_every_validation(chrf_run, figures):
    meta = load_checkpoint(chrf_run).meta
    validations, epochs = meta["validations"], meta["history"]
    updates = [v["update"] for v in validations]
    loss, accuracy, chrf, share = figures(epochs, validations).axes[:4]
    assert [ax.get_xlabel() for ax in (loss, accuracy, chrf, share)] == ["update"] * 4
    lines = curves(loss)
    assert list(lines["valid (teacher-forced)"].get_xdata()) == updates
    assert list(lines["valid (teacher-forced)"].get_ydata()) == [
        v["valid_loss"] for v in validations
    ]
    training = lines["training (epoch mean, at its end)"]
    assert list(training.get_xdata()) == [r["updates"] for r in epochs]
    assert list(training.get_ydata()) == [r["train_loss"] for r in epochs]
    assert list(accuracy.get_lines()[0].get_ydata()) == [v["valid_accuracy"] for v in validations]
    assert list(curves(chrf)["chrF"].get_ydata()) == [v["valid_chrf"] for v in validations]
    assert list(curves(share)["exact match"].get_xdata()) == updates
    # the best validation is marked, the epoch ends numbered on a top axis of each panel
    kept = meta["trainer"]["best_validation"]["update"]
    for ax in (loss, accuracy, chrf, share):
        assert list(curves(ax)[f"best validation (update {kept})"].get_xdata()) == [kept, kept]
        assert top_axis(ax) == ([r["updates"] for r in epochs], [str(r["epoch"]) for r in epochs])


def validation(update, epoch, loss, **flags):
    return {
        "update": update, "epoch": epoch, "step": update - 4 * (epoch - 1), "valid_loss": loss,
        "valid_accuracy": 1 - loss, "evaluated_on": "valid", "best": False, "at_stop": False,
        **flags,
    }  # fmt: skip


def epoch_record(epoch, updates, loss):
    return {"epoch": epoch, "train_loss": loss + 0.1, "valid_loss": loss,
            "valid_accuracy": 1 - loss, "updates": updates}  # fmt: skip


def test_curves_by_epoch_when_every_validation_ends_an_epoch(figures):
    history = [epoch_record(1, 4, 0.6), epoch_record(2, 8, 0.4)]
    validations = [validation(4, 1, 0.6, best=True), validation(8, 2, 0.4, best=True)]
    for given in (validations, None):  # None: a model saved before they were recorded
        loss, accuracy = figures(history, given).axes[:2]
        assert loss.get_xlabel() == accuracy.get_xlabel() == "epoch"
        assert list(curves(loss)["valid (teacher-forced)"].get_xdata()) == [1, 2]
        assert not loss.child_axes
    marks = [label for label in curves(figures(history, validations).axes[0]) if "best" in label]
    assert marks == ["best validation (epoch 2)"]
    # a stop within epoch 3 validated once more: then by update, that one included
    history.append({**epoch_record(3, 10, 0.5), "step": 2, "at_stop": True})
    validations.append(validation(10, 3, 0.5, at_stop=True))
    loss = figures(history, validations).axes[0]
    assert loss.get_xlabel() == "update"
    assert list(curves(loss)["valid (teacher-forced)"].get_xdata()) == [4, 8, 10]
    assert list(curves(loss)["training (epoch mean, at its end)"].get_xdata()) == [4, 8]
    assert top_axis(loss) == ([4, 8], ["1", "2"])


def test_curves_of_a_run_stopped_before_its_first_epoch_ended(figures):
    validations = [validation(3, 1, 0.7), validation(5, 1, 0.6, at_stop=True)]
    loss = figures([{**epoch_record(1, 5, 0.6), "step": 5, "at_stop": True}], validations).axes[0]
    assert loss.get_xlabel() == "update" and not loss.child_axes
    assert list(curves(loss)) == ["valid (teacher-forced)"]  # no epoch: no epoch mean
    assert list(curves(loss)["valid (teacher-forced)"].get_xdata()) == [3, 5]


@pytest.mark.parametrize(
    "record, said",
    [
        ({"update": "7", "valid_loss": 0.5, "valid_accuracy": 0.5}, "update is '7'"),
        ({"update": 7, "valid_accuracy": 0.5}, "valid_loss is missing or no number"),
        ("7", "is not an object"),
    ],
)
def test_a_damaged_validation_record_is_named(figures, record, said):
    from seq2seq_kit.errors import Seq2SeqError

    good = validation(3, 1, 0.5)
    with pytest.raises(Seq2SeqError, match=rf"meta.validations\[1\]:? {said}"):
        figures([], [good, record])


@pytest.fixture
def sigint_arrives():
    """A test run started in the background inherits an ignored SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_no_curves_for_a_run_interrupted_before_any_validation(
    tmp_path, capsys, monkeypatch, sigint_arrives
):
    pytest.importorskip("matplotlib")
    out = tmp_path / "m"
    signal_after_steps(monkeypatch, 2, signal.SIGINT)
    args = ["train", "--data", "digits", "--valid-every", "3", "--no-progress"]
    assert cli.main([*args, "--out", str(out)]) == 128 + signal.SIGINT
    assert load_checkpoint(out).meta["validations"] == []
    capsys.readouterr()
    assert cli.main(["plot", "--model", str(out)]) == 2
    assert "no epoch has ended and no validation was made" in capsys.readouterr().err
    assert not (out / "curves.png").exists()
