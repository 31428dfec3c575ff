"""A backend written outside this repository registers and passes the conformance suite
with no change to the core: build a throwaway distribution, pip-install it, run the suite."""

import textwrap

from plugin_install import install, listed_backends, run_pytest

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
    env = install(package, tmp_path / "site")
    row = listed_backends(env)["wrapped"]
    assert "0.3.1" in row and "seq2seq-kit-wrapped" in row

    (tmp_path / "test_wrapped.py").write_text(SUITE)
    result = run_pytest(tmp_path / "test_wrapped.py", env, "-rs")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # undeclared capabilities are skipped, not failed
    assert "lacks ['beam']" in result.stdout
