"""Tokenizers: the built-ins, per-side choice, SentencePiece models in the model directory,
and a tokenizer plugin installed from a throwaway distribution."""

import json
import subprocess
import sys
import unicodedata

import pytest
from forged import as_version_1
from hypothesis import given, settings
from hypothesis import strategies as st
from plugin_install import install

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import CheckpointError, ConfigError, DataError
from seq2seq_kit.tokenizers import make_tokenizer
from seq2seq_kit.vocab import Vocabulary

NATO = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        ["Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India"]
        + ["Juliett", "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo"]
        + ["Sierra", "Tango", "Uniform", "Victor", "Whiskey", "Xray", "Yankee", "Zulu"],
        strict=True,
    )
)
SENTENCES = [
    "The cat sat on the mat.",
    "A dog barked at the cat.",
    "Où est la gare ?",
    "Déjà vu, again and again.",
    "She sells sea shells by the sea shore.",
    "Peter Piper picked a peck of pickled peppers.",
] * 20


def nato_tsv(path, words):
    path.write_text("".join(f"{w}\t{' '.join(NATO[c] for c in w)}\n" for w in words))
    return path


def quick(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    return config


def test_word_vocabulary_limits_make_rare_words_unknown():
    tokenizer = make_tokenizer("word", {"min_frequency": 2})
    vocab = Vocabulary.build(["a b b c", "b a d"], tokenizer)
    assert vocab.tokens == ("a", "b")
    assert vocab.encode("a d", unknown="replace")[1] == vocab.unk_id
    capped = Vocabulary.build(["a b b c c c"], make_tokenizer("word", {"max_size": 2}))
    assert capped.tokens == ("b", "c")


def test_bad_tokenizer_options_name_the_option():
    with pytest.raises(ValueError, match="vocab_size"):
        make_tokenizer("sentencepiece", {"vocab_size": 0})
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'.*sentencepiece"):
        make_tokenizer("bpe")
    config = quick()
    config.data.tokenizer_options = {"min_frequncy": 2}
    config.data.tokenizer = "word"
    with pytest.raises(ConfigError, match=r"data.tokenizer = 'word' with options .*min_frequncy"):
        seq2seq_kit.train(config, data=[("a b", "c d")] * 3)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_round_trip_is_exact(model_type):
    tokenizer = make_tokenizer("sentencepiece", {"model_type": model_type, "vocab_size": 45})
    tokenizer.train(SENTENCES)
    for text in [*set(SENTENCES), "  two  spaces ", "unseen: ÿ ✓", "tab\there"]:
        text = unicodedata.normalize("NFC", text)
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode("The cat sat on the mat.")) < len("The cat sat on the mat.")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdeéà .,?'T", min_size=1, max_size=40))
def test_sentencepiece_round_trip_property(text):
    text = unicodedata.normalize("NFC", text)
    assert TRAINED.decode(TRAINED.encode(text)) == text


TRAINED = make_tokenizer("sentencepiece", {"vocab_size": 45})
TRAINED.train(SENTENCES)


def test_too_large_a_vocabulary_is_a_data_error():
    config = quick()
    config.data.tokenizer, config.data.tokenizer_options = "sentencepiece", {"vocab_size": 5000}
    with pytest.raises(DataError, match=r"source tokenizer .*vocab_size 5000 .* at most \d+"):
        seq2seq_kit.train(config, data=[("ab", "cd")] * 5)


def test_an_unseen_word_is_named_as_a_word():
    vocab = Vocabulary.build(["the cat"], "word")
    with pytest.raises(ValueError, match=r"word 2: 'dog' in 'the dog' was never seen") as info:
        vocab.encode("the dog")
    assert "U+" not in str(info.value)


def test_sentencepiece_model_lives_in_the_model_directory_and_is_checked(tmp_path):
    pairs = [(s, s.upper()) for s in SENTENCES]
    valid = tmp_path / "valid.tsv"
    valid.write_text("Ω only here\tΩ ONLY HERE\n")
    config = quick()
    config.data.tokenizer, config.data.tokenizer_options = "sentencepiece", {"vocab_size": 45}
    config.data.valid = str(valid)
    out = tmp_path / "m"
    trained = seq2seq_kit.train(config, data=pairs, out=out)
    assert {p.name for p in out.glob("*.model")} == {
        "source-sentencepiece.model",
        "target-sentencepiece.model",
    }
    # learned from the training pairs only: the validation-only character is no piece
    assert "Ω" not in trained.source_vocab.tokens
    assert "Ω" not in "".join(trained.source_vocab.tokenizer.encode("Cat"))
    loaded = seq2seq_kit.load(out)
    assert loaded.source_vocab == trained.source_vocab
    assert loaded.source_vocab.tokenizer.encode("The cat") == trained.source_vocab.pieces("The cat")
    model = out / "source-sentencepiece.model"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="source-sentencepiece.model: corrupted"):
        load_checkpoint(out)


def test_shared_vocabulary_is_one_vocabulary_over_both_sides(tmp_path):
    config = quick()
    config.data.tokenizer, config.data.tokenizer_options = "sentencepiece", {"vocab_size": 45}
    config.data.shared_vocabulary = True
    trained = seq2seq_kit.train(config, data=[(s, s[::-1]) for s in SENTENCES])
    assert trained.source_vocab is trained.target_vocab
    assert trained.model.spec.src_vocab_size == trained.model.spec.tgt_vocab_size
    config = quick()
    config.data.tokenizer, config.data.target_tokenizer = "char", "word"
    with pytest.raises(ValueError, match="shared_vocabulary needs one tokenizer"):
        config.data.shared_vocabulary = True


def test_characters_in_symbols_out_through_the_cli(tmp_path, capsys):
    import random

    rng = random.Random(0)
    words = sorted({"".join(rng.choices("abcdefgh", k=rng.randint(1, 3))) for _ in range(200)})
    data = nato_tsv(tmp_path / "nato.tsv", words)
    out = tmp_path / "m"
    args = ["train", "--data", str(data), "--out", str(out), "--no-progress"]
    args += ["--source-tokenizer", "char", "--target-tokenizer", "word", "--valid-fraction", "0"]
    args += ["--epochs", "40", "--batch-size", "16", "--hidden-size", "64"]
    args += ["--learning-rate", "0.01", "--embedding-size", "16"]
    assert main(args) == 0
    doc = json.loads((out / "model.json").read_text())
    assert doc["source_vocab"]["tokenizer"] == "char"
    assert doc["target_vocab"]["tokenizer"] == "word"
    assert set(doc["target_vocab"]["tokens"]) == {NATO[c] for c in "abcdefgh"}
    capsys.readouterr()
    assert main(["translate", "--model", str(out), "cab", "h"]) == 0
    assert capsys.readouterr().out == "Charlie Alfa Bravo\nHotel\n"
    assert main(["evaluate", "--model", str(out), "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    exact = float(printed.split("exact match:")[1].split()[0])
    errors = float(printed.split("token error rate:")[1].split()[0])
    assert exact > 0.9 and errors < 0.05, printed


def test_model_directories_from_before_tokenizer_options_load(tmp_path):
    out = tmp_path / "m"
    seq2seq_kit.train(quick(300), out=out)
    doc = json.loads((out / "model.json").read_text())
    for side in ("source_vocab", "target_vocab"):
        doc[side].pop("tokenizer_options")
    doc.pop("tokenizer_files")
    (out / "model.json").write_text(json.dumps(as_version_1(doc)))
    assert seq2seq_kit.load(out).translate(["1", "2"]) == ["one", "two"]


def docs_block(title: str) -> str:
    """The code block titled ``title`` in docs/tokenizers.md: the test installs what the
    page shows."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "tokenizers.md").read_text()
    found = re.search(rf'^```\w+ title="{re.escape(title)}"\n(.*?)^```$', page, re.S | re.M)
    assert found, title
    return found.group(1)


def test_tokenizer_plugin_from_a_throwaway_distribution(tmp_path):
    package = tmp_path / "pkg"
    (package / "s2s_reverse").mkdir(parents=True)
    (package / "pyproject.toml").write_text(docs_block("pyproject.toml"))
    (package / "s2s_reverse" / "__init__.py").write_text(docs_block("s2s_reverse/__init__.py"))
    env = install(package, tmp_path / "site")
    out = tmp_path / "m"

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "seq2seq_kit", *args], capture_output=True, text=True, env=env
        )

    res = cli("train", "--tokenizer", "reverse", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "exact match on 9 training sources: 9/9" in res.stdout
    assert (out / "source-reverse.txt").exists()
    assert json.loads((out / "model.json").read_text())["source_vocab"]["tokenizer"] == "reverse"
    res = cli("translate", "--model", str(out), "3", "7")
    assert res.stdout == "three\nseven\n", res.stderr
    # without the plugin the model names what is missing
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "translate", "--model", str(out), "3"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "needs tokenizer 'reverse', which is not installed" in res.stderr
