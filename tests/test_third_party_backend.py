"""A backend written outside this repository registers and passes the conformance suite
with no change to the core: build a throwaway distribution, pip-install it, run the suite."""

import importlib.util
import os
import subprocess
import sys
import textwrap

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "seq2seq-kit-wrapped"
version = "0.3.1"
dependencies = []

[project.entry-points.seq2seq_kit]
wrapped = "s2s_wrapped"
"""

PLUGIN = '''
"""A third-party backend: the NumPy model behind another name, declaring only "train"."""
from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend


def build(spec, *, seed, optimizer):
    from seq2seq_kit.plugins import get_backend

    return get_backend("numpy").build(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(Backend(name="wrapped", version="0.3.1", capabilities=frozenset({"train"}),
                     build=build))
'''

SUITE = """
from seq2seq_kit.testing import BackendSuite


class TestWrapped(BackendSuite):
    backend_name = "wrapped"
"""


def test_throwaway_backend_registers_and_passes_the_suite(tmp_path):
    package = tmp_path / "wrapped"
    (package / "s2s_wrapped").mkdir(parents=True)
    (package / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "s2s_wrapped" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    site = tmp_path / "site"
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(site),
        str(package),
    ]
    if importlib.util.find_spec("setuptools") is not None:
        install.insert(4, "--no-build-isolation")
    subprocess.run(install, check=True, capture_output=True)
    assert (site / "s2s_wrapped" / "__init__.py").exists()

    env = {**os.environ, "PYTHONPATH": str(site)}
    listing = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends"],
        capture_output=True,
        text=True,
        env=env,
    )
    row = next(line for line in listing.stdout.splitlines() if line.startswith("wrapped"))
    assert "0.3.1" in row and "seq2seq-kit-wrapped" in row

    (tmp_path / "test_wrapped.py").write_text(SUITE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_wrapped.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # undeclared capabilities are skipped, not failed
    assert "lacks ['beam']" in result.stdout
