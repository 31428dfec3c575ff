import io
import tracemalloc

import pytest

from seq2seq_kit.data import load_dataset, read_text_lines, read_tsv, read_tsv_rows, split
from seq2seq_kit.datasets import DIGITS
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
    with pytest.raises(DataError, match=r"latin1\.tsv:2: not valid UTF-8: byte 0xe9 at byte 3 "):
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


def test_tsv_byte_of_an_invalid_utf8_line_counts_the_bom(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(b"\xef\xbb\xbfa\t\xff\n")
    with pytest.raises(DataError, match=r"d\.tsv:1: not valid UTF-8: byte 0xff at byte 6 "):
        read_tsv(f)


def test_tsv_encoded_surrogates_are_not_utf8(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(b"a\tb\nc\t\xed\xa0\x80\n")
    with pytest.raises(DataError, match=r"d\.tsv:2: not valid UTF-8"):
        read_tsv(f)


def test_tsv_reading_stops_at_the_limit(tmp_path):
    # Line 3 is not UTF-8: a reader that stops after two rows never reaches it.
    f = tmp_path / "d.tsv"
    f.write_bytes(b"a\tb\n\nc\td\n\xff\tx\n")
    assert read_tsv_rows(f, limit=2) == [(1, "a", "b"), (3, "c", "d")]
    with pytest.raises(DataError, match=r"d\.tsv:4: not valid UTF-8"):
        read_tsv_rows(f, limit=3)


def test_tsv_memory_grows_with_the_rows_kept_not_the_file(tmp_path):
    f = tmp_path / "big.tsv"
    f.write_bytes(b"a source sentence\ta target sentence\tattribution\n" * 200_000)  # 10 MB
    tracemalloc.start()
    try:
        rows = read_tsv_rows(f, limit=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [line for line, _, _ in rows] == [1, 2, 3]
    assert peak < 1_000_000


def test_limit_below_one_is_an_error(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("a\tb\nc\td\n")
    with pytest.raises(DataError, match="limit must be at least 1"):
        read_tsv(f, limit=0)
    with pytest.raises(DataError, match="limit must be at least 1"):
        load_dataset(str(f), 0)
    with pytest.raises(DataError, match="limit must be at least 1"):
        load_dataset("digits", 0)


def test_limit_of_a_tsv_keeps_lines_and_of_a_registered_dataset_its_first_pairs(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("a\tb\n\nc\td\ne\tf\n")
    dataset = load_dataset(str(f), 2)
    assert dataset.pairs == (("a", "b"), ("c", "d")) and dataset.lines == (1, 3)
    assert load_dataset("digits", 3).pairs == DIGITS[:3]
    assert load_dataset("digits", 100).pairs == DIGITS


def test_tsv_blank_lines_are_skipped_and_the_last_line_may_lack_its_end(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(b"a\tb\r\n\r\n   \n\nc\td")
    assert read_tsv_rows(f) == [(1, "a", "b"), (5, "c", "d")]


@pytest.mark.parametrize(
    "content, line, what",
    [
        (b"a\tb\rc\td\re\tf\r", 1, "carriage return"),  # classic Mac line ends
        (b"a\tb\nc\td\re\tf\n", 2, "carriage return"),
        (b"a\tb\r\r\n", 1, "carriage return"),
        (b"a\tb\nc\x00\td\n", 2, "NUL"),
        (b"a\tb\nc\td\xef\xbb\xbfe\tf\n", 2, "byte order mark"),
        (b"a\tb\n\xef\xbb\xbfc\td\n", 2, "byte order mark"),  # two files joined
    ],
)
def test_tsv_characters_that_would_merge_or_hide_rows_are_errors(tmp_path, content, line, what):
    f = tmp_path / "d.tsv"
    f.write_bytes(content)
    with pytest.raises(DataError, match=rf"d\.tsv:{line}: .*{what}.*: U\+"):
        read_tsv(f)


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_tsv_other_line_breaks_are_errors_naming_the_column(tmp_path, char):
    # str.splitlines breaks at each of these: rows that one reader sees as two, another as one.
    f = tmp_path / "d.tsv"
    f.write_text(f"a\tb\nc\td{char}e\tf\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"d\.tsv:2: .*U\+{ord(char):04X} at column 4$"):
        read_tsv(f)


@pytest.mark.parametrize(
    "row, role",
    [
        ("\t", "source"),
        (" \t ", "source"),
        ("\tb", "source"),
        ("  \tb", "source"),
        ("a\t", "target"),
        ("a\t \t(attribution)", "target"),
    ],
)
def test_tsv_row_with_an_empty_source_or_target_is_an_error(tmp_path, row, role):
    f = tmp_path / "d.tsv"
    f.write_text(f"x\ty\n{row}\nz\tw\n")
    with pytest.raises(DataError, match=rf"d\.tsv:2: empty {role} field"):
        read_tsv(f)


def test_tsv_with_only_blank_lines_has_no_rows(tmp_path):
    f = tmp_path / "blank.tsv"
    f.write_text("\n  \n\n")
    with pytest.raises(DataError, match=r"blank\.tsv: no source<TAB>target rows"):
        read_tsv(f)


def test_text_lines_keep_empty_lines_and_accept_bom_and_crlf():
    stream = io.BytesIO(b"\xef\xbb\xbf1\r\n\r\n 2 \n\xc3\xa9\tx\n3")
    assert read_text_lines(stream) == ["1", "", " 2 ", "\u00e9\tx", "3"]
    assert read_text_lines(io.BytesIO(b"")) == []
    assert read_text_lines(io.BytesIO(b"\n")) == [""]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"1\n2\xff\n", r"<stdin>:2: not valid UTF-8: byte 0xff at byte 2 of the line"),
        (b"1\r2\n", r"<stdin>:1: .*carriage return.*column 2"),
        (b"1\n\n2\x003\n", r"<stdin>:3: .*NUL"),
        ("1\n2\u20283\n".encode(), r"<stdin>:2: .*U\+2028 at column 2"),
    ],
)
def test_text_lines_errors_name_stdin_and_the_line(content, message):
    with pytest.raises(DataError, match=message):
        read_text_lines(io.BytesIO(content))
