import json
import subprocess
import sys

import pytest

from seq2seq_kit.cli import main

DIGITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "digits"
    assert main(["train", "--data", "digits", "--out", str(out), "--no-progress"]) == 0
    return out


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args], input=stdin, capture_output=True, text=True
    )


def test_train_prints_the_nine_translations(model_dir, capsys):
    # the fixture's output was captured before this test; train again quickly to see it
    out = model_dir.parent / "again"
    main(["train", "--data", "digits", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    for digit, word in zip("123456789", DIGITS, strict=True):
        assert f"{digit} -> {word}\n" in printed
    assert "9/9" in printed
    assert (out / "model.json").exists() and (out / "weights.safetensors").exists()


def test_train_s_closing_check_searches_where_the_model_samples(tmp_path, capsys):
    # the exact match train prints measures the model: a [decode] table that samples
    # (a temperature far from 1, no seed) would make it one random draw
    config = tmp_path / "sampling.toml"
    config.write_text("[decode]\nsampling = true\ntemperature = 5.0\nnum_samples = 2\n")
    out = tmp_path / "digits"
    args = ["train", "--config", str(config), "--data", "digits", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert "exact match on 9 training sources: 9/9" in capsys.readouterr().out


def test_translate_arguments_and_stdin(model_dir):
    res = run("translate", "--model", str(model_dir), "1", "2", "3")
    assert res.returncode == 0 and res.stdout == "one\ntwo\nthree\n"
    res = run("translate", "--model", str(model_dir), stdin="4\n\n7\n   \n9")
    assert res.returncode == 0 and res.stdout == "four\n\nseven\n\nnine\n"


def test_translate_n_best(model_dir):
    res = run("translate", "--model", str(model_dir), "--beam", "3", "--n-best", "3", "8")
    lines = [line.split("\t") for line in res.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["1", "1"], ["1", "2"], ["1", "3"]]
    assert lines[0][3] == "eight"
    scores = [float(line[2]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_unseen_character_is_an_error_naming_it(model_dir):
    res = run("translate", "--model", str(model_dir), stdin="5\n1a\n")
    assert res.returncode == 2
    assert "line 2" in res.stderr and "character 2" in res.stderr and "'a'" in res.stderr
    assert "Traceback" not in res.stderr
    res = run("translate", "--model", str(model_dir), "--unknown", "replace", "0", "3")
    assert res.returncode == 0 and res.stdout.splitlines()[1] == "three"


def test_truncation_is_reported(model_dir):
    res = run("translate", "--model", str(model_dir), "--max-length", "2", "3")
    assert res.stdout == "th\n" and "truncated" in res.stderr


def test_evaluate_prints_metrics(model_dir, tmp_path):
    data = tmp_path / "test.tsv"
    data.write_text("1\tone\n2\ttwo\n3\tthree\n3\tTHREE\n")
    res = run("evaluate", "--model", str(model_dir), "--data", str(data))
    assert res.returncode == 0, res.stderr
    assert "exact match: 1.0000 (3/3)" in res.stdout
    assert "CER:" in res.stdout and "chrF:" in res.stdout and "nrefs:var" in res.stdout
    res = run("evaluate", "--model", str(model_dir), "--data", str(data), "--json")
    scores = json.loads(res.stdout)
    assert scores["exact_match"] == 1.0 and scores["cer"] == 0.0 and scores["chrf"] == 100.0


def test_bad_data_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tone\njust-one-field\n")
    res = run("train", "--data", str(bad), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "bad.tsv:2:" in res.stderr
    assert not (tmp_path / "m").exists()
    res = run("train", "--data", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "none.tsv: no such file" in res.stderr


def test_damaged_model_directory(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    weights = copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    res = run("translate", "--model", str(copy), "1")
    assert res.returncode == 2 and "corrupted or truncated" in res.stderr
    weights.unlink()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copy.iterdir())
    res = run("translate", "--model", str(copy), "1")
    assert res.returncode == 2 and "weights.safetensors: missing" in res.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in copy.iterdir()) == before


def test_unknown_backend_lists_installed_and_pip_command(model_dir):
    res = run("translate", "--model", str(model_dir), "--backend", "nope", "1")
    assert res.returncode == 2
    assert "'nope' is not installed" in res.stderr and "numpy" in res.stderr
    assert "pip install" in res.stderr


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = 3\n[model]\nhidden_size = 8\n")
    out = tmp_path / "m"
    res = run("train", "--config", str(cfg), "--epochs", "2", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["spec"]["hidden_size"] == 8 and len(meta["meta"]["history"]) == 2


def test_evaluate_unseen_character_names_file_line(model_dir, tmp_path):
    data = tmp_path / "test.tsv"
    data.write_text("1\tone\n2\ttwo\n\n4x\tfour\n")
    res = run("evaluate", "--model", str(model_dir), "--data", str(data))
    assert res.returncode == 2
    assert "test.tsv:4:" in res.stderr and "character 2: 'x'" in res.stderr
    res = run("evaluate", "--model", str(model_dir), "--data", str(data), "--unknown", "replace")
    assert res.returncode == 0 and "exact match: 0.6667 (2/3)" in res.stdout


def test_reload_in_fresh_processes_gives_identical_outputs(model_dir):
    import os

    outputs = set()
    for seed in ("0", "1", "999"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "seq2seq_kit",
                "translate",
                "--model",
                str(model_dir),
                "--beam",
                "4",
                "--n-best",
                "4",
                "3",
                "17",
                "9",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.add(res.stdout)
    assert len(outputs) == 1 and outputs.pop().count("\n") >= 3


def test_data_without_a_space_character(tmp_path):
    data = tmp_path / "nospace.tsv"
    data.write_text("".join(f"{a}{b}\t{b}{a}\n" for a in "abc" for b in "xyz"))
    out = tmp_path / "m"
    res = run(
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "150",
        "--valid-fraction",
        "0",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    res = run("translate", "--model", str(out), "ax", "cz")
    assert res.stdout == "xa\nzc\n"
