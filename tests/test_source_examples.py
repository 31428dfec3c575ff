"""A model's example inputs: chosen when it trains from its validation sources (its
training sources without them), kept in ``meta.examples``, read back by ``load`` and
``info``; a model saved without them loads as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from forged import forge

import seq2seq_kit
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.config import Config
from seq2seq_kit.datasets import digits
from seq2seq_kit.errors import CheckpointError
from seq2seq_kit.source_examples import EXAMPLES, MAX_CHARS, SCANNED, source_examples
from seq2seq_kit.vocab import Vocabulary


def _pairs_and_ids(sources, vocab):
    pairs = [(s, "x") for s in sources]
    return pairs, [vocab.encode(s, unknown="replace") for s in sources]


def _words(n: int) -> list[str]:
    """``n`` distinct texts of 1 to 12 words, in no order of length."""
    return [" ".join(["ab"] * (1 + (i * 7) % 12) + [str(i)]) for i in range(n)]


def test_the_examples_are_the_shorter_half_spread_shortest_first():
    sources = _words(60)
    vocab = Vocabulary.build(sources, "word")
    pairs, ids = _pairs_and_ids(sources, vocab)
    chosen = source_examples(pairs, ids, vocab)
    assert len(chosen) == EXAMPLES == len(set(chosen)) and set(chosen) <= set(sources)
    lengths = sorted(len(vocab.pieces(s)) for s in sources)
    shown = [len(vocab.pieces(s)) for s in chosen]
    assert shown == sorted(shown)
    assert shown[0] == lengths[0]  # the shortest is always shown
    assert shown[-1] <= lengths[len(lengths) // 2]  # none longer than the median
    assert len(set(shown)) > 1  # spread: not all of the shortest length
    assert source_examples(pairs, ids, vocab) == chosen  # deterministic
    assert source_examples(pairs, ids, vocab, count=2) == [chosen[0], chosen[-1]]


def test_texts_the_model_does_not_read_exactly_are_never_examples():
    known = ["12", "3", "45", "6", "78"]
    vocab = Vocabulary.build(known)  # char
    unseen = "1x"  # 'x' is no piece of the vocabulary: its ids hold <unk>
    odd = ["", "  ", "4\t5", "1\n2", "1" * (MAX_CHARS + 1)]
    sources = [unseen, *odd, "3", "3", *known]
    pairs, ids = _pairs_and_ids(sources, vocab)
    chosen = source_examples(pairs, ids, vocab, count=10)
    assert sorted(chosen) == sorted(known)  # each once, the rest left out
    # a corpus's text, decoded from ids with <unk> dropped, reads as other ids
    decoded = [("12", "x"), ("6", "x")]
    rows = [[vocab.token_id("1"), vocab.unk_id, vocab.token_id("2")], vocab.encode("6")]
    assert source_examples(decoded, rows, vocab) == ["6"]
    assert source_examples([], [], vocab) == []
    with pytest.raises(ValueError, match="count must be >= 1"):
        source_examples(pairs, ids, vocab, count=0)


def test_only_the_first_sources_are_read():
    sources = ["2" * 5] * SCANNED + ["1"]  # the short one comes too late
    vocab = Vocabulary.build(sources)
    pairs, ids = _pairs_and_ids(sources, vocab)
    assert source_examples(pairs, ids, vocab) == ["2" * 5]


def _config(epochs: int = 2) -> Config:
    config = Config()
    config.train.epochs, config.train.progress = epochs, False
    config.model.hidden_size = config.model.embedding_size = 8
    return config


#: numbers of two and three digits 1-9 spelled digit by digit: every digit is in the
#: training pairs, so every validation source reads
NUMBERS = [
    (str(n), " ".join(dict(digits().pairs)[d] for d in str(n)))
    for n in range(11, 400, 7)
    if "0" not in str(n)
]


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """Numbers with a quarter held out for validation."""
    config = _config()
    config.data.valid_fraction = 0.25
    out = tmp_path_factory.mktemp("examples") / "valid"
    return seq2seq_kit.train(config, out=out, data=NUMBERS), out


def test_a_trained_model_keeps_examples_from_its_validation_sources(validated):
    translator, out = validated
    valid = [s for s, _ in translator.valid_pairs]
    assert len(valid) > 2 * EXAMPLES
    examples = translator.meta["examples"]
    assert len(examples) == EXAMPLES and set(examples) <= set(valid)
    assert [len(e) for e in examples] == sorted(len(e) for e in examples)
    assert len(examples[0]) == min(len(s) for s in valid)
    loaded = seq2seq_kit.load(out)
    assert loaded.examples == examples == translator.examples
    assert load_checkpoint(out).meta["examples"] == examples
    assert all(loaded.translate(examples))  # each one reads without an error


def test_unreadable_validation_sources_give_way_to_training_sources(tmp_path):
    """digits with a validation split: its characters are not all seen in training."""
    config = _config()
    config.data.valid_fraction = 0.34
    translator = seq2seq_kit.train(config, out=tmp_path / "m")
    valid = [s for s, _ in translator.valid_pairs]
    train = [s for s, _ in translator.train_pairs]
    known = [s for s in valid if all(c in translator.source_vocab for c in s)]
    examples = translator.examples
    assert examples[: len(known)] == sorted(known, key=len) and len(known) < len(valid)
    assert set(examples[len(known) :]) <= set(train)
    assert len(examples) == min(EXAMPLES, len(known) + len(train))


def test_without_validation_pairs_the_examples_are_training_sources(tmp_path):
    translator = seq2seq_kit.train(_config(), out=tmp_path / "m")
    sources = [s for s, _ in digits().pairs]
    assert translator.valid_pairs == []
    assert len(translator.examples) == EXAMPLES and set(translator.examples) <= set(sources)
    # a resumed run chooses them again from the same data: the same
    resumed = seq2seq_kit.train(resume=tmp_path / "m", epochs=3)
    assert resumed.examples == translator.examples


def test_kept_checkpoints_and_their_average_carry_the_examples(tmp_path):
    config = _config(epochs=3)
    config.train.keep_last = 2
    translator = seq2seq_kit.train(config, out=tmp_path / "m", data=NUMBERS)
    kept = [tmp_path / "m" / entry["path"] for entry in translator.meta["checkpoints"]]
    assert len(kept) == 2 and translator.examples
    for directory in kept:
        assert seq2seq_kit.load(directory).examples == translator.examples
    averaged = seq2seq_kit.average(tmp_path / "m", last=2, out=tmp_path / "avg")
    assert seq2seq_kit.load(averaged).examples == translator.examples


def test_a_model_saved_without_examples_loads(validated, tmp_path):
    _, out = validated
    old = tmp_path / "old"
    old.mkdir()
    for file in out.iterdir():
        if file.is_file():
            (old / file.name).write_bytes(file.read_bytes())
    doc = json.loads((old / "model.json").read_text())
    del doc["meta"]["examples"]
    forge(old / "model.json", doc)
    loaded = seq2seq_kit.load(old)
    assert loaded.examples == [] and "examples" not in loaded.meta
    info = _info(old, "--json")
    assert json.loads(info.stdout)["examples"] is None
    doc["meta"]["examples"] = "12"  # not a list: refused naming it
    forge(old / "model.json", doc)
    with pytest.raises(CheckpointError, match="meta.examples must be a list of strings"):
        load_checkpoint(old)


def _info(model, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "info", "--model", str(model), *flags],
        capture_output=True,
        text=True,
        check=True,
    )


def test_info_shows_the_examples(validated):
    translator, out = validated
    assert json.loads(_info(out, "--json").stdout)["examples"] == translator.examples
    text = _info(out).stdout.splitlines()
    start = text.index(f"examples:     {len(translator.examples)} to try the model with")
    assert text[start + 1 : start + 1 + len(translator.examples)] == [
        f"  {json.dumps(e, ensure_ascii=False)}" for e in translator.examples
    ]
