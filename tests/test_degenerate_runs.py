"""Runs that would train on nothing, on absurdly long pairs, or decode broken weights stop
with an error instead."""

import json
from pathlib import Path

import numpy as np
import pytest
from forged import forge
from safetensors.numpy import load_file, save_file

import seq2seq_kit
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.corpus import preprocess
from seq2seq_kit.errors import ConfigError, DataError


@pytest.fixture
def no_training(monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr("seq2seq_kit.backend.Backend.create", build)


def test_zero_training_pairs_after_the_split_is_an_error(tmp_path, no_training, capsys):
    data = tmp_path / "two.tsv"
    data.write_text("1\tone\n2\ttwo\n")
    out = tmp_path / "m"
    args = ["train", "--data", str(data), "--valid-fraction", "0.75", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "two.tsv: no training pairs" in err and "valid_fraction 0.75" in err
    assert not out.exists()


def test_zero_training_pairs_after_the_length_filter_is_an_error(no_training):
    config = Config()
    config.data.max_source_length = 1
    config.data.source = "num2words"
    config.data.options = {"count": 30, "low": 10, "high": 99}
    with pytest.raises(
        DataError, match="no training pairs of 30: all 27 are longer than data.max_source_length"
    ):
        seq2seq_kit.train(config)


def test_long_pairs_are_skipped_counted_and_do_not_set_the_decoding_cap(tmp_path):
    data = tmp_path / "long.tsv"
    rows = [f"{d}\t{w}" for d, w in zip("123456789", "abcdefghi", strict=True)]
    rows.insert(4, "5\t" + "x" * 20_000)
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m"
    args = ["--data", str(data), "--epochs", "2", "--valid-fraction", "0", "--no-progress"]
    assert main(["train", *args, "--max-target-length", "50", "--out", str(out)]) == 0
    doc = json.loads((out / "model.json").read_text())
    assert doc["meta"]["skipped_too_long"] == 1 and doc["meta"]["train_pairs"] == 9
    assert doc["max_length"] < 100
    assert main(["train", *args, "--out", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "model.json").read_text())["max_length"] == 40_000


def test_non_finite_weights_are_a_clear_error_when_decoding(tmp_path, capsys):
    config = Config()
    config.train.epochs, config.train.progress = 2, False
    out = tmp_path / "m"
    seq2seq_kit.train(config, out=out)
    # a file damaged the way a diverged run of an older version saved it, checksum updated
    weights = load_file(out / "weights.safetensors")
    name = sorted(weights)[1]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, out / "weights.safetensors")
    doc = json.loads((out / "model.json").read_text())
    import hashlib

    digest = hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
    doc["weights"]["sha256"] = digest
    forge(out / "model.json", doc)
    for beam in ("1", "3"):
        assert main(["translate", "--model", str(out), "--beam", beam, "3"]) == 2
        err = capsys.readouterr().err
        assert f"['{name}'] hold NaN or infinite values" in err and "Traceback" not in err


TATOEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba-eng-fra.tsv"
#: Tatoeba's first rows, for a run that does not depend on the shared data
ROWS = [
    ("Go.", "Va !"),
    ("Hi.", "Salut !"),
    ("Run!", "Cours !"),
    ("Who?", "Qui ?"),
    ("Wow!", "Ça alors !"),
    ("Fire!", "Au feu !"),
    ("Help!", "À l'aide !"),
    ("Jump.", "Saute."),
    ("Stop!", "Ça suffit !"),
    ("Wait!", "Attends !"),
    ("I see.", "Je comprends."),
    ("I try.", "J'essaye."),
    ("I won!", "J'ai gagné !"),
    ("Oh no!", "Oh non !"),
    ("Attack!", "Attaque !"),
    ("Cheers!", "Santé !"),
    ("Get up.", "Lève-toi."),
    ("Got it!", "Compris !"),
    ("I'm OK.", "Je vais bien."),
    ("Listen.", "Écoutez !"),
]


def word_run(data=None, **options):
    """One epoch with the word tokenizer on all of ``data`` (a TSV file; None: pairs to be
    given), ``options`` over its [data] keys."""
    config = Config()
    if data is not None:
        config.data.source = str(data)
    config.data.tokenizer, config.data.valid_fraction = "word", 0.0
    config.train.epochs, config.train.progress = 1, False
    for key, value in options.items():
        setattr(config.data, key, value)
    return config


def test_a_vocabulary_of_specials_alone_is_refused_before_training(tmp_path, no_training):
    data = tmp_path / "tatoeba.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in ROWS))
    config = word_run(data, tokenizer_options={"min_frequency": 100000})
    with pytest.raises(ConfigError) as caught:
        seq2seq_kit.train(config, out=tmp_path / "m")
    message = str(caught.value)
    assert message.startswith(
        "the source vocabulary (data.tokenizer = 'word') holds no piece but the specials: it "
        "maps 27 of the 27 pieces of the training sources (100.0%) to <unk>"
    )
    assert "data.tokenizer_options.min_frequency = 100000 drops every piece" in message
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not TATOEBA.exists(), reason="the shared Tatoeba data are not here")
def test_tatoeba_with_min_frequency_100000_exits_2_naming_the_option(tmp_path, capsys):
    config = tmp_path / "word.toml"
    config.write_text(
        f'[data]\nsource = "{TATOEBA}"\nlimit = 300\ntokenizer = "word"\n'
        "tokenizer_options = { min_frequency = 100000 }\n"
    )
    out = tmp_path / "m"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the source vocabulary (data.tokenizer = 'word') holds no piece" in err
    assert "(100.0%) to <unk>" in err
    assert "data.tokenizer_options.min_frequency = 100000" in err
    assert not out.exists()


def test_a_vocabulary_that_maps_most_pieces_to_unk_is_refused(tmp_path, no_training):
    pairs = [(f"I see {w}", f"je vois {w}") for w in ("cats", "dogs", "a bird", "it", "them")]
    config = word_run(target_tokenizer_options={"max_size": 1})
    # je (5 of 16 target words) is kept: 11 of 16 become <unk>
    with pytest.raises(ConfigError) as caught:
        seq2seq_kit.train(config, data=pairs)
    message = str(caught.value)
    assert message.startswith(
        "the target vocabulary (data.tokenizer = 'word') is too small: it maps 11 of the 16 "
        "pieces of the training targets (68.8%) to <unk>, more than the 50%"
    )
    assert "data.target_tokenizer_options.max_size = 1 keeps only the 1 most frequent" in message
    # one vocabulary of the 2 most frequent of I, see, je, vois (5 each): 22 of 32 <unk>
    config.data.tokenizer_options, config.data.target_tokenizer_options = {"max_size": 2}, {}
    config.data.shared_vocabulary = True
    with pytest.raises(ConfigError, match=r"^the shared vocabulary .* 22 of the 32 pieces of"):
        seq2seq_kit.train(config, data=pairs)


def test_a_vocabulary_that_keeps_most_pieces_trains(tmp_path):
    pairs = [(f"I see {w}", f"je vois {w}") for w in ("cats", "dogs", "a bird", "it", "them")]
    config = word_run(tokenizer_options={"min_frequency": 2})
    translator = seq2seq_kit.train(config, data=pairs)  # 6 of 16 target words are <unk>
    assert translator.target_vocab.tokens == ("je", "vois")
    assert translator.history


def test_the_share_of_unk_is_refused_only_above_half():
    from seq2seq_kit.prepare import MAX_UNKNOWN_SHARE, check_vocabulary
    from seq2seq_kit.vocab import Vocabulary

    assert MAX_UNKNOWN_SHARE == 0.5
    counts = {"a": 2, "b": 1, "c": 1}
    check_vocabulary(Config(), "source", Vocabulary(("a",)), counts)  # 2 of 4: half
    with pytest.raises(ConfigError, match=r"maps 2 of the 3 pieces .*\(66.7%\)"):
        check_vocabulary(Config(), "source", Vocabulary(("b",)), {"a": 1, "b": 1, "c": 1})


def test_preprocess_refuses_the_same_vocabulary_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "tatoeba.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in ROWS))
    config = word_run(data, tokenizer_options={"min_frequency": 100000})
    with pytest.raises(ConfigError) as caught:
        preprocess(config, tmp_path / "c")
    assert str(caught.value).startswith(
        "the source vocabulary (data.tokenizer = 'word') holds no piece but the specials: it "
        "maps 27 of the 27 pieces of the training sources (100.0%) to <unk>"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tatoeba.tsv"]
    toml = tmp_path / "word.toml"
    toml.write_text(
        f'[data]\nsource = "{data}"\ntokenizer = "word"\n'
        "target_tokenizer_options = { min_frequency = 100000 }\n"
    )
    assert main(["preprocess", "--config", str(toml), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "error: the target vocabulary (data.tokenizer = 'word') holds no piece" in err
    assert "data.target_tokenizer_options.min_frequency = 100000 drops" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tatoeba.tsv", "word.toml"]
