"""translate reads standard input as bytes, by the data files' line rules, not the locale's."""

import os
import subprocess
import sys

import pytest

from seq2seq_kit.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stdin") / "digits"
    args = ["train", "--data", "digits", "--epochs", "30", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    return out


def translate(model_dir, stdin: bytes, *args, encoding=None):
    env = dict(os.environ)
    if encoding is not None:
        env["PYTHONIOENCODING"] = encoding
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "translate", "--model", str(model_dir), *args],
        input=stdin,
        capture_output=True,
        env=env,
    )


@pytest.mark.parametrize("encoding", [None, "ascii:strict", "utf-8:surrogateescape"])
def test_invalid_utf8_on_stdin_is_exit_2_naming_the_line(model_dir, encoding):
    res = translate(model_dir, b"1\nab\xff\n", encoding=encoding)
    stderr = res.stderr.decode()
    assert res.returncode == 2, stderr
    assert "error: <stdin>:2: not valid UTF-8: byte 0xff at byte 3 of the line" in stderr
    assert "Traceback" not in stderr and "DCFF" not in stderr
    assert res.stdout == b""


def test_stdin_is_utf8_whatever_the_locale_says(model_dir):
    res = translate(model_dir, "1\n\u00e9\n".encode(), encoding="ascii:strict")
    stderr = res.stderr.decode()
    assert res.returncode == 2 and "Traceback" not in stderr
    assert "input line 2, character 1: " in stderr and "(U+00E9)" in stderr


def test_bom_crlf_and_empty_lines_give_one_output_per_line(model_dir):
    res = translate(model_dir, b"\xef\xbb\xbf1\r\n\r\n2\r\n3")
    assert res.returncode == 0, res.stderr.decode()
    outputs = res.stdout.decode().split("\n")
    assert len(outputs) == 5 and outputs[1] == "" and outputs[4] == ""


def test_a_lone_carriage_return_on_stdin_is_exit_2(model_dir):
    # Universal newlines split "1\r2" into two inputs: two outputs for one line of bytes.
    res = translate(model_dir, b"1\r2\n3\n")
    assert res.returncode == 2
    assert "<stdin>:1: " in res.stderr.decode() and "carriage return" in res.stderr.decode()
    assert res.stdout == b""
