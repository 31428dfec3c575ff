"""Fine-tuning (``train.init_from``): a new run from a trained model's weights, keeping its
architecture, tokenizers and vocabularies, with a fresh optimizer and schedule."""

import json
import math
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config, load_config
from seq2seq_kit.errors import CheckpointError, ConfigError, DataError
from seq2seq_kit.run_record import RunRecord
from seq2seq_kit.trainer import evaluate


def config(**train) -> Config:
    cfg = Config()
    cfg.train.progress = False
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A digits model (characters 1-9 to their English words)."""
    out = tmp_path_factory.mktemp("source") / "digits"
    cfg = config(epochs=30, batch_size=3)
    cfg.model.hidden_size = 16
    seq2seq_kit.train(cfg, out=out)
    return out


def fine_tune(init_from, out, **train) -> Config:
    """A fine-tuning config on num2words-shaped pairs (pieces the digits model lacks train
    as <unk>)."""
    cfg = config(**{"epochs": 3, "batch_size": 4, "init_from": str(init_from), **train})
    cfg.data.source, cfg.data.options, cfg.data.valid_fraction = "num2words", {"count": 24}, 0.0
    cfg.decode.unknown = "replace"
    return cfg


def loss_on(translator, pairs):
    sources = [translator.source_vocab.encode(s, unknown="replace") for s, _ in pairs]
    targets = [translator.target_vocab.encode(t, unknown="replace") for _, t in pairs]
    return evaluate(translator.model, sources, targets)[0]


def model_json(path):
    return json.loads((path / "model.json").read_text())


def test_fine_tuning_lowers_the_loss_and_keeps_the_model(source, tmp_path):
    out = tmp_path / "ft"
    tuned = seq2seq_kit.train(fine_tune(source, out, epochs=5), out=out)
    before = loss_on(seq2seq_kit.load(source), tuned.train_pairs)
    assert loss_on(seq2seq_kit.load(out), tuned.train_pairs) < before
    old, new = model_json(source), model_json(out)
    for key in ("spec", "source_vocab", "target_vocab"):
        assert new[key] == old[key]
    assert seq2seq_kit.load(out).translate(["12"]) == tuned.translate(["12"])
    recorded = new["meta"]["config"]
    assert recorded["model"]["hidden_size"] == 16  # the model's, not the default 32
    assert recorded["data"]["tokenizer"] == "char"


def test_the_optimizer_and_schedule_start_afresh(source, tmp_path):
    out = tmp_path / "ft"
    cfg = fine_tune(source, out, warmup_steps=4, lr_schedule="inverse_sqrt")
    seq2seq_kit.train(cfg, out=out)
    record = RunRecord.from_dict(model_json(out)["meta"])
    updates = math.ceil(24 / 4) * 3
    assert record.updates == updates  # this run's, not added to the source model's
    assert load_file(out / "optimizer.safetensors")["step"].item() == updates
    first = record.history[0]
    assert first["updates"] == 6  # inverse_sqrt at update 6 of this run, not of the source's
    assert first["learning_rate"] == pytest.approx(1e-3 * math.sqrt(4 / 6))


def test_lineage_is_recorded_and_shown_by_info(source, tmp_path, capsys):
    out = tmp_path / "ft"
    seq2seq_kit.train(fine_tune(source, out), out=out)
    checkpoint = load_checkpoint(source)
    lineage = model_json(out)["meta"]["init_from"]
    assert lineage == {"path": str(source.resolve()), "weights_sha256": checkpoint.weights_sha256}
    assert model_json(out)["meta"]["config"]["train"]["init_from"] == str(source.resolve())
    assert main(["info", "--model", str(out)]) == 0
    assert f"fine-tuned:   from {source.resolve()}" in capsys.readouterr().out
    assert main(["info", "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["init_from"] == lineage
    assert "init_from" not in model_json(source)["meta"]  # a run from initial weights
    assert RunRecord.from_dict(model_json(source)["meta"]).init_from is None


def test_the_api_keyword_equals_the_config_key(source, tmp_path):
    by_key = seq2seq_kit.train(fine_tune(source, tmp_path / "key"), out=tmp_path / "key")
    cfg = fine_tune(source, tmp_path / "kw")
    cfg.train.init_from = None
    by_keyword = seq2seq_kit.train(cfg, out=tmp_path / "kw", init_from=source)
    assert (
        model_json(tmp_path / "kw")["meta"]["init_from"]
        == model_json(tmp_path / "key")["meta"]["init_from"]
    )
    assert by_keyword.translate(["12", "7"]) == by_key.translate(["12", "7"])


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--hidden-size", "32"], "model.hidden_size is 16 in the model but 32 now"),
        (["--cell", "gru"], "model.cell is 'lstm' in the model but 'gru' now"),
        (["--architecture", "transformer"], "model.architecture is 'rnn' in the model"),
        (["--tokenizer", "word"], "(data.tokenizer)"),
        (["--target-tokenizer", "word"], "the target tokenizer is 'char'"),
        (["--shared-vocabulary"], "data.shared_vocabulary is False in the model but True"),
    ],
)
def test_a_key_set_against_the_model_is_refused_by_name(source, tmp_path, capsys, flags, named):
    out = tmp_path / "ft"
    args = ["train", "--out", str(out), "--init-from", str(source), "--data", "digits"]
    assert main([*args, "--epochs", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and named in err and "keeps the model's architecture" in err
    assert not out.exists()


def test_keys_equal_to_the_model_are_accepted(source, tmp_path):
    cfg = config(epochs=1, init_from=str(source))
    cfg.model.hidden_size, cfg.data.tokenizer = 16, "char"
    seq2seq_kit.train(cfg, out=tmp_path / "ft")


def test_a_missing_model_directory_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="train.init_from.*no such model directory"):
        seq2seq_kit.train(config(epochs=1, init_from=str(tmp_path / "none")), out=tmp_path / "o")


def test_the_source_directory_as_output_is_refused(source):
    before = (source / "model.json").read_bytes()
    with pytest.raises(ConfigError, match="output directory is the model to fine-tune"):
        seq2seq_kit.train(config(epochs=1, init_from=str(source), overwrite=True), out=source)
    assert (source / "model.json").read_bytes() == before


def test_an_unknown_piece_is_refused_naming_line_and_piece(source, tmp_path):
    data = tmp_path / "new.tsv"
    data.write_text("12\tone two\n3\tthree\n40\tfour zero\n")
    cfg = config(epochs=1, init_from=str(source))
    cfg.data.source, cfg.data.valid_fraction = str(data), 0.0
    with pytest.raises(DataError) as caught:
        seq2seq_kit.train(cfg, out=tmp_path / "ft")
    message = str(caught.value)
    assert f"{data}:3:" in message and "'0' (U+0030)" in message and "source" in message
    assert "decode.unknown = 'replace'" in message


def test_an_unknown_piece_of_a_dataset_names_the_pair(source, tmp_path, capsys):
    args = ["train", "--out", str(tmp_path / "ft"), "--init-from", str(source)]
    assert main([*args, "--data", "num2words", "--limit", "20", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "pair " in err and "not in the vocabulary of the model" in err
    assert "--unknown replace" in err


def test_init_from_with_resume_is_refused(source, tmp_path, capsys):
    run = tmp_path / "run"
    seq2seq_kit.train(config(epochs=1), out=run)
    args = ["train", "--resume", str(run), "--epochs", "2", "--init-from", str(source)]
    assert main(args) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_a_fine_tuned_run_resumes_with_its_config_and_keeps_its_lineage(source, tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "ft.toml").write_text(
        f'[data]\nsource = "digits"\n[train]\nepochs = 1\nprogress = false\n'
        f'init_from = "{source.parent.name}/{source.name}"\n'
    )
    (folder / source.parent.name).symlink_to(source.parent)
    cfg = load_config(folder / "ft.toml")  # relative to the file's folder
    assert cfg.train.init_from == str(folder / source.parent.name / source.name)
    out = tmp_path / "ft"
    seq2seq_kit.train(cfg, out=out)
    lineage = model_json(out)["meta"]["init_from"]
    cfg = load_config(folder / "ft.toml")
    cfg.train.epochs = 2
    seq2seq_kit.train(cfg, resume=out)
    meta = model_json(out)["meta"]
    assert meta["init_from"] == lineage and meta["trainer"]["epoch"] == 2


def test_the_cli_fine_tunes(source, tmp_path):
    out = tmp_path / "ft"
    args = ["train", "--init-from", str(source), "--out", str(out), "--data", "digits"]
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args, "--epochs", "2", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert model_json(out)["meta"]["init_from"]["path"] == str(source.resolve())
    assert model_json(out)["spec"] == model_json(source)["spec"]
