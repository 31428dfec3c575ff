"""train.keep_last / keep_best: the checkpoints a model directory keeps, each a full model
directory that loads and resumes exactly; the directory's model stays the best; what is
dropped is removed, a crash at any point loses no model and leaves no unlisted checkpoint,
and nothing that a save did not write is ever removed."""

import json
import signal

import numpy as np
import pytest
from test_interrupt import assert_same_training, signal_after_steps

import seq2seq_kit
from seq2seq_kit import kept_checkpoints, trainer
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import CheckpointError, ConfigError, TrainingInterrupted
from seq2seq_kit.kept_checkpoints import JOURNAL, checkpoint_path
from seq2seq_kit.trainer import epoch_records

#: The validation loss the test gives each update a validation is due at: valid_every 2 and
#: 4 updates an epoch validate at 2, 4, ..., 16; the best at 10, then 4.
LOSSES = {2: 0.9, 4: 0.3, 6: 0.8, 8: 0.5, 10: 0.1, 12: 0.7, 14: 0.6, 16: 0.4}


@pytest.fixture(autouse=True)
def sigint_as_at_a_terminal():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def prescribed(monkeypatch):
    """Validation losses by update (:data:`LOSSES`; 2.0 at a stop between them), so the
    best and the last validations are known."""

    def evaluate(model, sources, targets, group=None):
        return LOSSES.get(int(model.optimizer_state()["step"]), 2.0), 0.5

    monkeypatch.setattr(trainer, "evaluate", evaluate)


def config(tmp_path, **train):
    """A tiny RNN: 8 training pairs in batches of 2 (4 updates an epoch), 4 epochs,
    validating every 2 updates."""
    (tmp_path / "d.tsv").write_text(
        "".join(f"{i}\t{'ab'[i % 2] * (1 + i % 3)}\n" for i in range(8))
    )
    (tmp_path / "v.tsv").write_text("1\tbb\n6\taa\n")
    cfg = Config()
    cfg.data.source, cfg.data.valid = str(tmp_path / "d.tsv"), str(tmp_path / "v.tsv")
    cfg.model.hidden_size, cfg.model.embedding_size = 4, 4
    cfg.train.epochs, cfg.train.batch_size, cfg.train.progress = 4, 2, False
    cfg.train.learning_rate, cfg.train.valid_every = 0.03, 2
    cfg.train.save_seconds = 3600.0
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def on_disk(out):
    """The update of each checkpoint folder in ``out``."""
    folder = out / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in folder.iterdir()) if folder.exists() else []


def listed(out):
    return [e["update"] for e in load_checkpoint(out).meta.get("checkpoints", [])]


@pytest.mark.parametrize(
    "keep_last, keep_best, kept",
    [(3, 0, [12, 14, 16]), (0, 2, [4, 10]), (2, 2, [4, 10, 14, 16]), (1, 1, [10, 16])],
)
def test_the_last_and_best_validations_are_kept(tmp_path, prescribed, keep_last, keep_best, kept):
    out = tmp_path / "m"
    done = seq2seq_kit.train(config(tmp_path, keep_last=keep_last, keep_best=keep_best), out=out)
    assert listed(out) == on_disk(out) == kept
    assert [e["update"] for e in done.meta["checkpoints"]] == kept
    main_dir = load_checkpoint(out)
    for entry in main_dir.meta["checkpoints"]:
        assert entry["path"] == checkpoint_path(entry["update"])
        assert (entry["metric"], entry["score"]) == ("loss", LOSSES[entry["update"]])
        assert entry["step"] == (entry["update"] - 1) % 4 + 1  # of its epoch: 2 or 4
        assert entry["epoch"] == (entry["update"] - 1) // 4 + 1
        ckpt = load_checkpoint(out / entry["path"])
        assert ckpt.weights_sha256 == entry["weights_sha256"]
        assert ckpt.meta["checkpoint"] == {
            k: entry[k] for k in ("update", "epoch", "step", "metric", "score")
        }
        assert "checkpoints" not in ckpt.meta
    # the directory's model is still the best validation's (update 10)
    best = load_checkpoint(out / checkpoint_path(10)) if 10 in kept else None
    if best is not None:
        for name, value in best.weights.items():
            np.testing.assert_array_equal(main_dir.weights[name], value, err_msg=name)
    newest = load_checkpoint(out / checkpoint_path(kept[-1]), extra=True)
    if kept[-1] == 16:  # the run's end: its weights are the directory's last ones
        last = load_checkpoint(out, extra=True).extra["last"]
        for name, value in newest.weights.items():
            np.testing.assert_array_equal(last[name], value, err_msg=name)


def test_without_keep_keys_the_directory_is_as_before(tmp_path, prescribed):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path), out=out)
    assert not (out / "checkpoints").exists() and not (out / JOURNAL).exists()
    assert "checkpoints" not in load_checkpoint(out).meta


def test_every_kept_checkpoint_loads_and_resumes_as_the_run_went_on(tmp_path, prescribed, capsys):
    straight = tmp_path / "straight"
    seq2seq_kit.train(config(tmp_path, keep_last=8), out=straight)
    assert listed(straight) == sorted(LOSSES)
    with_best = []
    for update in sorted(LOSSES)[:-1]:
        path = straight / checkpoint_path(update)
        assert main(["translate", "--model", str(path), "--max-length", "4", "1", "6"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        saved = load_checkpoint(path, extra=True)
        assert saved.meta["trainer"]["updates"] == update
        # the best weights so far ride along when they are another validation's
        best_so_far = min((u for u in LOSSES if u <= update), key=LOSSES.get)
        assert ("best" in saved.extra) == (best_so_far != update)
        with_best += ["best" in saved.extra]
        resumed = tmp_path / f"from-{update}"
        seq2seq_kit.train(resume=path, out=resumed)
        assert_same_training(
            load_checkpoint(straight, extra=True), load_checkpoint(resumed, extra=True)
        )
        # the resumed directory keeps its own checkpoints, from the resume on
        assert listed(resumed) == [u for u in sorted(LOSSES) if u > update]
    assert any(with_best) and not all(with_best)


def test_a_kept_checkpoint_is_not_resumed_in_place(tmp_path, prescribed, capsys):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=2), out=out)
    path = out / checkpoint_path(14)
    before = (path / "model.json").read_text()
    assert main(["train", "--resume", str(path), "--epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint of update 14" in err and "--out DIR" in err
    assert (path / "model.json").read_text() == before
    with pytest.raises(ConfigError, match="in another directory"):
        seq2seq_kit.train(resume=path, out=path, epochs=5)


def test_keep_best_needs_validation_pairs(tmp_path, capsys):
    cfg = config(tmp_path, keep_best=2)
    cfg.data.valid, cfg.data.valid_fraction = None, 0.0
    with pytest.raises(ConfigError, match=r"keep_best = 2 ranks checkpoints by their validation"):
        seq2seq_kit.train(cfg, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()
    # the last ones need none
    cfg.train.keep_best, cfg.train.keep_last = 0, 2
    seq2seq_kit.train(cfg, out=tmp_path / "m")
    assert listed(tmp_path / "m") == [14, 16]


def test_resuming_with_fewer_kept_drops_the_others_at_the_next_save(tmp_path, prescribed):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=4, keep_best=1, epochs=3), out=out)
    assert listed(out) == on_disk(out) == [6, 8, 10, 12]
    fewer = Config()
    fewer.train.keep_last = 1
    seq2seq_kit.train(fewer, resume=out, epochs=4)
    assert listed(out) == on_disk(out) == [10, 16]  # the best (keep_best 1) and the last
    fewer.train.keep_last = fewer.train.keep_best = 0
    resumed = seq2seq_kit.train(fewer, resume=out, epochs=5)
    assert resumed.meta["resumes"][-1]["changed"]["train.keep_best"] == [1, 0]
    assert listed(out) == [] and not (out / "checkpoints").exists()


def test_an_interrupted_run_resumes_to_the_same_checkpoints(tmp_path, prescribed):
    straight, split = tmp_path / "straight", tmp_path / "split"
    seq2seq_kit.train(config(tmp_path, keep_last=3, keep_best=1), out=straight)
    with pytest.MonkeyPatch.context() as signals:
        signal_after_steps(signals, 6, signal.SIGINT)  # a validation is due at update 6
        with pytest.raises(TrainingInterrupted):
            seq2seq_kit.train(config(tmp_path, keep_last=3, keep_best=1), out=split)
    assert listed(split) == on_disk(split) == [2, 4, 6]
    seq2seq_kit.train(resume=split)
    assert listed(split) == on_disk(split) == listed(straight) == [10, 12, 14, 16]
    assert_same_training(load_checkpoint(straight, extra=True), load_checkpoint(split, extra=True))


class PowerCut(Exception):
    pass


@pytest.mark.parametrize("at", ["first checkpoint", "checkpoint", "model", "removal"])
def test_a_crash_at_any_point_of_a_save_loses_nothing_and_leaves_nothing(tmp_path, prescribed, at):
    """keep_last 2: the save at update 8 adds update-00000008 and drops update-00000004."""
    straight, out = tmp_path / "straight", tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=2), out=straight)
    update = 2 if at == "first checkpoint" else 8
    save, remove = kept_checkpoints.save_checkpoint, kept_checkpoints.remove_model_dir
    wrote = []

    def cut_save(ckpt, path, **options):
        if path == out / checkpoint_path(update) and at.endswith("checkpoint"):
            save(ckpt, path, **options)  # all its files, and no model listing it
            raise PowerCut
        if path == out and wrote and at == "model":
            raise PowerCut
        if path == out / checkpoint_path(update):
            wrote.append(path)
        return save(ckpt, path, **options)

    def cut_removal(path):
        if at == "removal" and path == out / checkpoint_path(4):
            raise PowerCut
        return remove(path)

    with pytest.MonkeyPatch.context() as cuts:
        cuts.setattr(kept_checkpoints, "save_checkpoint", cut_save)
        cuts.setattr(kept_checkpoints, "remove_model_dir", cut_removal)
        with pytest.raises(PowerCut):
            seq2seq_kit.train(config(tmp_path, keep_last=2), out=out)
    # the directory's model is whole, and says which checkpoints it keeps
    model = load_checkpoint(out, extra=True)
    expected = {"first checkpoint": [], "checkpoint": [4, 6], "model": [4, 6], "removal": [6, 8]}
    assert listed(out) == expected[at]
    assert (out / JOURNAL).exists()
    # saved before its first checkpoint, then after each one
    assert model.meta["trainer"]["updates"] == {"removal": 8, "first checkpoint": 2}.get(at, 6)
    # the next run that writes the directory removes what the listing does not hold, also
    # when it stops before it would write the same checkpoint again
    short = Config()
    short.train.max_updates = model.meta["trainer"]["updates"] + 1
    seq2seq_kit.train(short, resume=out)
    assert not (out / JOURNAL).exists()
    assert listed(out) == on_disk(out) == expected[at]
    short.train.max_updates = 0
    seq2seq_kit.train(short, resume=out)
    assert listed(out) == on_disk(out) == [14, 16]
    resumed = load_checkpoint(out, extra=True)
    resumed.meta["history"] = epoch_records(resumed.meta["history"])  # less the short stop's
    assert_same_training(load_checkpoint(straight, extra=True), resumed)


def test_what_a_save_did_not_write_is_never_removed(tmp_path, prescribed):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=2, epochs=2), out=out)
    assert listed(out) == [6, 8]
    (out / checkpoint_path(6) / "notes.txt").write_text("mine")
    (out / "checkpoints" / "mine").mkdir()
    seq2seq_kit.train(resume=out, epochs=3)
    assert listed(out) == [10, 12]
    # update-00000006 lost its model, not the note; the folder of mine stays
    assert [p.name for p in (out / checkpoint_path(6)).iterdir()] == ["notes.txt"]
    assert (out / "checkpoints" / "mine").is_dir()
    assert not (out / checkpoint_path(8)).exists()
    # a journal naming anything but a checkpoint folder is not acted on
    (out / JOURNAL).write_text(json.dumps({"folders": ["checkpoints/mine", "../m", "model.json"]}))
    kept_checkpoints.recover(out)
    assert (out / "checkpoints" / "mine").is_dir() and (out / "model.json").exists()


def test_a_new_run_over_a_model_removes_the_checkpoints_it_kept(tmp_path, prescribed):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=2), out=out)
    seq2seq_kit.train(config(tmp_path, keep_best=1, epochs=2), out=out, overwrite=True)
    assert listed(out) == on_disk(out) == [4]


def test_a_run_resumed_over_another_runs_directory_keeps_none_of_its_checkpoints(
    tmp_path, prescribed
):
    other, ours = tmp_path / "other", tmp_path / "ours"
    seq2seq_kit.train(config(tmp_path, keep_last=8, seed=1), out=other)
    seq2seq_kit.train(config(tmp_path, keep_last=8), out=ours)
    # resumed from one of our checkpoints into the other run's directory, replacing it
    resumed = seq2seq_kit.train(
        resume=ours / checkpoint_path(10), out=other, overwrite=True, epochs=4
    )
    assert listed(other) == on_disk(other) == [12, 14, 16]  # ours from the resume on only
    for update in listed(other):
        a, b = (load_checkpoint(d / checkpoint_path(update)) for d in (ours, other))
        for name, value in a.weights.items():
            np.testing.assert_array_equal(value, b.weights[name], err_msg=f"{update} {name}")
    assert resumed.meta["trainer"]["updates"] == 16
    # resumed into a copy of its own directory, the copy's checkpoints are its own: kept
    copy = tmp_path / "copy"
    seq2seq_kit.train(config(tmp_path, keep_last=8, epochs=2), out=copy)
    seq2seq_kit.train(resume=copy, epochs=4)
    assert listed(copy) == sorted(LOSSES)


def test_no_command_writes_into_a_directorys_checkpoints_folder(tmp_path, prescribed, capsys):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_last=2, epochs=2), out=out)  # keeps 6 and 8
    before = {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    for target in (out / checkpoint_path(6), out / checkpoint_path(200)):  # 8 is read
        for args in (
            ["average", "--model", str(out), "--last", "1", "--out", str(target)],
            ["average", "--model", str(out), "--last", "1", "--out", str(target), "--overwrite"],
            ["train", "--epochs", "1", "--out", str(target), "--overwrite"],
        ):
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert "keeps the checkpoints its training writes and removes" in err, args
    assert {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()} == before
    assert not (out / checkpoint_path(200)).exists()
    # a folder in the way of a checkpoint to come is refused before anything is written
    (out / checkpoint_path(12)).mkdir()
    (out / checkpoint_path(12) / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="something this run did not write"):
        seq2seq_kit.train(resume=out, epochs=4)
    assert (out / checkpoint_path(12) / "notes.txt").read_text() == "mine"
    assert listed(out) == [8, 10]  # saved up to the validation before it


def test_info_lists_the_checkpoints(tmp_path, prescribed, capsys):
    out = tmp_path / "m"
    seq2seq_kit.train(config(tmp_path, keep_best=1), out=out)
    assert main(["info", "--model", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "checkpoints:  1 kept" in shown and f"{checkpoint_path(10)}: update 10" in shown
    assert main(["info", "--model", str(out / checkpoint_path(10)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"]["update"] == 10


def test_the_keys_are_in_the_reference_and_the_help(capsys):
    from test_docs import hooks

    table = hooks.config_reference()
    for key in ("keep_last", "keep_best"):
        assert f"| `train.{key}` | `0` | may change |" in table
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "--keep-last N" in shown and "--keep-best N" in shown
    assert "`seq2seq-kit average`" in hooks.cli_reference()
    with pytest.raises(SystemExit):
        main(["average", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--model DIR", "--last N", "--best N", "--inputs DIR", "--out DIR", "--overwrite"):
        assert flag in shown


def test_a_data_parallel_run_keeps_the_checkpoints_of_one_process(tmp_path):
    """Two torch ranks under torchrun (gloo on loopback): rank 0 alone writes, and keeps the
    checkpoints one process keeps, holding its weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch.distributed.run")
    if not torch.distributed.is_available():
        pytest.skip("torch built without torch.distributed")
    import os
    import socket
    import subprocess
    import sys

    args = [
        "--data", "num2words", "--limit", "40", "--valid-fraction", "0.2", "--backend",
        "torch", "--hidden-size", "8", "--embedding-size", "4", "--threads", "1",
        "--no-progress", "--max-updates", "6", "--valid-every", "2", "--keep-last", "2",
        "--keep-best", "1",
    ]  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TF_CONFIG")}
    launch = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "seq2seq_kit",
    ]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    done = subprocess.run(
        [*launch, "train", *args, "--batch-size", "4", "--out", str(two)],
        env=env | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert main(["train", *args, "--batch-size", "8", "--out", str(one)]) == 0
    assert listed(two) == on_disk(two) == listed(one) == on_disk(one)
    for entry in load_checkpoint(two).meta["checkpoints"]:
        theirs, ours = load_checkpoint(one / entry["path"]), load_checkpoint(two / entry["path"])
        for name, value in theirs.weights.items():
            np.testing.assert_allclose(ours.weights[name], value, atol=1e-5, err_msg=name)


def test_a_removal_that_fails_is_a_checkpoint_error_and_the_next_save_finishes_it(
    tmp_path, prescribed
):
    out = tmp_path / "m"

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kept_checkpoints, "remove_model_dir", refused)
        with pytest.raises(CheckpointError, match=r"update-00000002: updating the kept checkpo"):
            seq2seq_kit.train(config(tmp_path, keep_last=2), out=out)
    assert listed(out) == [4, 6] and on_disk(out) == [2, 4, 6]
    cfg = Config()
    cfg.train.max_updates = 7
    seq2seq_kit.train(cfg, resume=out)
    assert listed(out) == on_disk(out) == [4, 6]
