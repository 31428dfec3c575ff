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


def _translate_in_process(model_dir, stdin: bytes, *args, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        code = main(["translate", "--model", str(model_dir), *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_tab_separated_second_column_is_the_target_prefix(model_dir, monkeypatch, capsys):
    import seq2seq_kit

    code, out, err = _translate_in_process(
        model_dir, b"3\tfi\n7\n\n8\t\n", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    lines = out.split("\n")
    translator = seq2seq_kit.load(model_dir)
    expected = translator.translate(["3", "7", "", "8"], prefix=["fi", "", "", ""])
    assert lines[:4] == expected and lines[0].startswith("fi")
    code, out, err = _translate_in_process(
        model_dir, b"3\tfi\tx\n", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and out == ""
    assert "<stdin>:1: 2 TABs: an input is 'source' or 'source<TAB>target prefix'" in err
    code, out, err = _translate_in_process(
        model_dir, b"3\tfiq\n", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "input line 1: target prefix: character 3: 'q'" in err


def test_samples_are_printed_in_the_n_best_format(model_dir, monkeypatch, capsys):
    import seq2seq_kit

    flags = ["--sampling", "--num-samples", "3", "--seed", "5", "--temperature", "2"]
    code, out, err = _translate_in_process(
        model_dir, b"3\n12\n", *flags, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    expected = seq2seq_kit.load(model_dir).hypotheses(
        ["3", "12"], sampling=True, num_samples=3, seed=5, temperature=2.0
    )
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(int(n), int(r), t) for n, r, _, t in rows] == [
        (i, rank, h.text) for i, hyps in enumerate(expected, 1) for rank, h in enumerate(hyps, 1)
    ]
    assert [float(s) for *_, s, _ in rows] == [
        pytest.approx(h.score, abs=1e-4) for hyps in expected for h in hyps
    ]


def test_every_decode_key_is_a_translate_flag_and_a_rule_across_keys_exits_2(
    model_dir, monkeypatch, capsys
):
    from seq2seq_kit.config import DecodeConfig

    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    help_text = capsys.readouterr().out
    for key in DecodeConfig.model_fields:
        flag = "--" + key.replace("_", "-")
        assert flag in help_text, flag
    code, _, err = _translate_in_process(
        model_dir, b"3\n", "--top-k", "3", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "decode.top_k = 3 applies to sampling only" in err
    assert "--sampling" in err
