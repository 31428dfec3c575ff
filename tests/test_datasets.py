import subprocess
import sys
from collections import Counter

import pytest

from seq2seq_kit.data import load_dataset
from seq2seq_kit.datasets import NATO_ALPHABET, nato
from seq2seq_kit.errors import DataError


def test_nato_spells_each_letter_as_one_symbol():
    dataset = load_dataset("nato")
    assert dataset.name == "nato" and len(dataset.pairs) == 1000
    for word, symbols in dataset.pairs:
        assert [NATO_ALPHABET[c] for c in word] == symbols.split(" ")
    assert " ".join(NATO_ALPHABET[c] for c in "cab") == "Charlie Alfa Bravo"
    assert len(set(NATO_ALPHABET.values())) == 26 and NATO_ALPHABET["j"] == "Juliett"


def test_nato_words_are_distinct_and_within_the_lengths():
    pairs = nato(count=500, min_length=2, max_length=4, seed=1).pairs
    words = [word for word, _ in pairs]
    assert len(set(words)) == 500
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    assert set(Counter(len(w) for w in words)) == {2, 3, 4}


def test_nato_fills_every_word_of_the_lengths_when_asked():
    # 26 one-letter and 676 two-letter words: all of them, none twice
    words = {word for word, _ in nato(count=702, min_length=1, max_length=2).pairs}
    assert len(words) == 702 and {len(w) for w in words} == {1, 2}


def test_nato_is_deterministic_from_its_seed():
    assert nato(count=50, seed=3) == nato(count=50, seed=3)
    assert nato(count=50, seed=3).pairs != nato(count=50, seed=4).pairs


def test_nato_holds_out_a_validation_share_like_num2words():
    assert load_dataset("nato").valid_fraction == load_dataset("num2words").valid_fraction > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, r"nato count must be in 1\.\.12356630, got 0"),
        ({"count": 27, "max_length": 1}, r"nato count must be in 1\.\.26, got 27"),
        ({"min_length": 0}, r"nato min_length must be in 1\.\.12, got 0"),
        ({"max_length": 13}, r"nato max_length must be in 1\.\.12, got 13"),
        ({"min_length": 4, "max_length": 3}, r"nato max_length must be in 4\.\.12, got 3"),
        ({"seed": -1}, r"nato seed must be in 0\.\.4294967295, got -1"),
        ({"count": "10"}, r"nato count must be an integer, got '10'"),
        ({"count": 10.0}, r"nato count must be an integer, got 10\.0"),
        ({"max_length": True}, r"nato max_length must be an integer, got True"),
    ],
)
def test_nato_bad_options_are_errors_naming_the_option(options, message):
    with pytest.raises(DataError, match=r"dataset 'nato' with options .*: " + message):
        load_dataset("nato", **options)


def test_nato_unknown_option_lists_its_options():
    with pytest.raises(DataError, match=r"its options: count, min_length, max_length, seed"):
        load_dataset("nato", letters=3)


def test_train_with_a_bad_nato_option_exits_2_naming_it(tmp_path):
    config = tmp_path / "nato.toml"
    config.write_text('[data]\nsource = "nato"\noptions = { max_length = 20 }\n')
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "train", "--config", str(config), "--out",
         str(tmp_path / "m")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2
    assert "error: dataset 'nato'" in res.stderr and "max_length must be in 1..12" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "m").exists()
