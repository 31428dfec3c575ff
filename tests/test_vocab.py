import os
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seq2seq_kit.errors import UnknownTokenError
from seq2seq_kit.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary, pad


def test_specials_have_fixed_ids_and_are_not_data():
    vocab = Vocabulary.build(["a\tb\n", "<s>"])
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert len(vocab) == len(SPECIALS) + len(set("a\tb\n<s>"))
    # tab and newline are ordinary characters, not start/end markers
    ids = vocab.encode("\t\n")
    assert all(i >= len(SPECIALS) for i in ids)
    assert vocab.decode(ids) == "\t\n"


def test_ids_sorted_by_code_point_regardless_of_order():
    a = Vocabulary.build(["cba", "d"])
    b = Vocabulary.build(["d", "abc"])
    assert a == b
    assert a.tokens == ("a", "b", "c", "d")


def test_ids_identical_across_hash_seeds():
    code = (
        "from seq2seq_kit.vocab import Vocabulary;"
        "print(Vocabulary.build(['zebra', 'éclair', 'quick brown fox']).tokens)"
    )
    outs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.check_output([sys.executable, "-c", code], env=env, text=True))
    assert len(outs) == 1


def test_nfc_normalisation_at_build_and_encode():
    decomposed = unicodedata.normalize("NFD", "é")
    assert len(decomposed) == 2
    vocab = Vocabulary.build(["é"])
    assert vocab.tokens == ("é",)
    assert vocab.encode(decomposed) == vocab.encode("é")


def test_unknown_character_error_names_character_and_position():
    vocab = Vocabulary.build(["123"])
    with pytest.raises(UnknownTokenError) as info:
        vocab.encode("1a", line=4)
    message = str(info.value)
    assert "'a'" in message and "character 2" in message and "line 4" in message
    assert info.value.position == 2
    assert vocab.encode("1a", unknown="replace") == [vocab.encode("1")[0], UNK]


def test_decode_drops_specials_and_stops_at_eos():
    vocab = Vocabulary.build(["ab"])
    a, b = vocab.encode("ab")
    assert vocab.decode([BOS, a, PAD, UNK, b, EOS, a]) == "ab"


def test_word_tokenizer():
    vocab = Vocabulary.build(["the cat", "a  cat"], tokenizer="word")
    assert vocab.tokens == ("a", "cat", "the")
    assert vocab.decode(vocab.encode("the  cat")) == "the cat"


def test_round_trip_through_dict():
    vocab = Vocabulary.build(["hello world"])
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_pad():
    out = pad([[5, 6], [], [7]])
    assert out.dtype.name == "int32"
    assert out.tolist() == [[5, 6], [0, 0], [7, 0]]


@given(st.text(min_size=1, max_size=40))
def test_encode_decode_round_trip(text):
    text = unicodedata.normalize("NFC", text)
    vocab = Vocabulary.build([text])
    assert vocab.decode(vocab.encode(text)) == text
