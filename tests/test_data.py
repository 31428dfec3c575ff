import pytest

from seq2seq_kit.data import load_dataset, read_tsv, split
from seq2seq_kit.errors import DataError


def test_tsv_reads_two_columns_and_ignores_attribution(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org\nHi.\tSalut !\n")
    assert read_tsv(f) == [("Go.", "Va !"), ("Hi.", "Salut !")]


def test_tsv_bom_crlf_and_limit(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes("\ufeffa\tb\r\nc\td\r\ne\tf\r\n".encode())
    assert read_tsv(f) == [("a", "b"), ("c", "d"), ("e", "f")]
    assert read_tsv(f, limit=2) == [("a", "b"), ("c", "d")]


def test_tsv_row_with_one_field_names_file_and_line(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("a\tb\nonly-one-field\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: .*1 field"):
        read_tsv(f)


def test_tsv_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.tsv.*empty file"):
        read_tsv(empty)
    with pytest.raises(DataError, match=r"missing\.tsv: no such file"):
        read_tsv(tmp_path / "missing.tsv")


def test_tsv_invalid_utf8_names_line(tmp_path):
    f = tmp_path / "latin1.tsv"
    f.write_bytes(b"a\tb\nc\t\xe9t\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.tsv:2: not valid UTF-8"):
        read_tsv(f)


def test_split_is_seeded_and_keeps_sources_on_one_side():
    pairs = [(f"s{i % 40}", f"t{i}") for i in range(100)]
    train, valid = split(pairs, 0.25, seed=3)
    assert len({s for s, _ in valid}) == 10
    assert not {s for s, _ in train} & {s for s, _ in valid}
    assert sorted(train + valid) == sorted(pairs)
    assert split(pairs, 0.25, seed=3) == (train, valid)
    assert split(pairs, 0.25, seed=4) != (train, valid)
    assert split(pairs, 0.0, seed=3) == (pairs, [])


def test_builtin_datasets():
    digits = load_dataset("digits")
    assert digits.pairs[0] == ("1", "one") and len(digits.pairs) == 9
    assert digits.valid_fraction == 0.0
    numbers = load_dataset("num2words", low=0, high=100, count=50, seed=1)
    assert len({s for s, _ in numbers.pairs}) == 50
    assert dict(numbers.pairs).get("42", "forty-two") == "forty-two"
    french = load_dataset("num2words", low=21, high=22, count=1, lang="fr")
    assert french.pairs == (("21", "vingt et un"),)
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_dataset_options_the_loader_does_not_take_are_named():
    with pytest.raises(DataError, match=r"'digits'.*'low'.*its options: none"):
        load_dataset("digits", low=0)
    with pytest.raises(DataError, match=r"'num2words'.*'hgih'.*its options: .*high"):
        load_dataset("num2words", hgih=10)
