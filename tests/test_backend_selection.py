"""Choosing a backend by flag, environment variable and config file, end to end."""

import json
import os
import subprocess
import sys
import time

import pytest

from seq2seq_kit.plugins import registry

INSTALLED = set(registry().backends)
needs_all = pytest.mark.skipif(
    not {"numpy", "torch", "keras"} <= INSTALLED, reason="needs numpy, torch and keras backends"
)


def cli(*args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items() if k != "SEQ2SEQ_KIT_BACKEND"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
    )


def trained_with(model_dir):
    return json.loads((model_dir / "model.json").read_text())["meta"]["backend"]


@needs_all
def test_selection_env_config_and_flag(tmp_path):
    quick = ["--epochs", "2", "--no-progress"]
    res = cli(
        "train",
        "--data",
        "digits",
        "--out",
        str(tmp_path / "env"),
        *quick,
        env={"SEQ2SEQ_KIT_BACKEND": "keras"},
    )
    assert res.returncode == 0, res.stderr
    assert trained_with(tmp_path / "env") == "keras"

    config = tmp_path / "c.toml"
    config.write_text('backend = "torch"\n')
    res = cli("train", "--config", str(config), "--out", str(tmp_path / "cfg"), *quick)
    assert res.returncode == 0, res.stderr
    assert trained_with(tmp_path / "cfg") == "torch"

    # the flag beats both the environment and the file
    res = cli(
        "train",
        "--config",
        str(config),
        "--backend",
        "numpy",
        "--out",
        str(tmp_path / "flag"),
        *quick,
        env={"SEQ2SEQ_KIT_BACKEND": "keras"},
    )
    assert res.returncode == 0, res.stderr
    assert trained_with(tmp_path / "flag") == "numpy"


@needs_all
def test_selection_train_torch_translate_everywhere(tmp_path):
    model = tmp_path / "m"
    res = cli(
        "train", "--backend", "torch", "--data", "digits", "--out", str(model), "--no-progress"
    )
    assert res.returncode == 0, res.stderr
    for backend in ("keras", "numpy", "torch"):
        res = cli("translate", "--model", str(model), "--backend", backend, "1", "2", "3")
        assert res.stdout == "one\ntwo\nthree\n", (backend, res.stderr)


@needs_all
def test_selection_listing_imports_no_framework():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from seq2seq_kit.cli import main; main(['backends']);"
        "print([m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules])"
    )
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    lines = res.stdout.splitlines()
    assert {line.split()[0] for line in lines[:-1]} >= {"numpy", "torch", "keras"}
    assert lines[-1] == "[]"
    print(f"`backends` with three backends installed: {elapsed:.2f} s wall")
