"""The import contracts in pyproject.toml hold the layers: they pass on this tree, and each
fails when a copy of the tree gets the import it forbids. Run by the lint environment
(import-linter); skipped where import-linter is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("numpy", "torch", "keras", "jax", "onnx", "ctranslate2")


def copy_tree(to: Path) -> Path:
    """The core and every backend package, copied under ``to`` with pyproject.toml."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "seq2seq_kit", to / "seq2seq_kit", ignore=ignore)
    for name in BACKENDS:
        package = f"seq2seq_kit_{name}"
        shutil.copytree(ROOT / "backends" / name / package, to / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # lint-imports, in a process of its own: the copy, not this tree, on its path
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    command = [sys.executable, "-c", code]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)


def test_the_contracts_hold_on_this_tree(tmp_path):
    done = lint_imports(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("seq2seq_kit/metrics.py", "import torch", "The core imports no framework"),
        ("seq2seq_kit/vocab.py", "import seq2seq_kit_numpy", "The core imports no framework"),
        ("seq2seq_kit_torch/model.py", "import seq2seq_kit_numpy", "Backends are independent"),
        ("seq2seq_kit/batch.py", "from . import decoding", "No import cycle"),
        # an upward import that closes no circle: only the layers see it
        ("seq2seq_kit/datasets.py", "from . import training", "The core's layers"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    tree = copy_tree(tmp_path)
    source = tree / module
    source.write_text(source.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout, done.stdout
