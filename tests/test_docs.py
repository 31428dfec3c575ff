"""The documentation: the backend tutorial's files, assembled from its code blocks, make a
package that installs and passes the conformance suite; reference pages cover every key."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_install import install, listed_backends, run_pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.S | re.M)


def tutorial_files(page: str) -> dict[str, str]:
    return dict(BLOCK.findall((DOCS / page).read_text()))


def test_backend_tutorial_builds_a_backend_that_passes_the_suite(tmp_path):
    files = tutorial_files("write-a-backend.md")
    assert {
        "pyproject.toml",
        "seq2seq_kit_numpy64/__init__.py",
        "tests/test_conformance.py",
    } <= set(files)
    package = tmp_path / "numpy64"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    env = install(package, tmp_path / "site", SEQ2SEQ_KIT_PLUGINS="numpy,numpy64")
    assert "numpy64" in listed_backends(env)
    result = run_pytest(package / "tests", env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "failed" not in result.stdout and " passed" in result.stdout


def test_configuration_and_cli_reference_cover_everything():
    sys.path.insert(0, str(DOCS))
    try:
        from hooks import cli_reference, config_reference
    finally:
        sys.path.remove(str(DOCS))
    from seq2seq_kit.config import Config

    table = config_reference()
    for section in ("data", "model", "train", "decode"):
        for name in type(Config.model_fields[section].default_factory()).model_fields:
            assert f"`{section}.{name}`" in table
    assert "None |" not in table.replace("`None`", "")  # every key has a description
    help_text = cli_reference()
    for command in ("train", "translate", "evaluate", "plot", "backends"):
        assert f"`seq2seq-kit {command}`" in help_text
    assert "{{ config_reference }}" in (DOCS / "configuration.md").read_text()


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=DOCS.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "configuration" / "index.html").exists()


def test_plugin_page_examples_register_and_work(capsys):
    import types

    from seq2seq_kit.plugins import build_registry

    blocks = re.findall(
        r"^```python\n(.*?)^```$", (DOCS / "write-a-plugin.md").read_text(), re.S | re.M
    )
    modules = []
    for i, code in enumerate(blocks):
        module = types.ModuleType(f"doc_plugin_{i}")
        exec(compile(code, f"write-a-plugin.md block {i}", "exec"), module.__dict__)
        modules.append(module)
    registry = build_registry(extra_plugins=tuple(modules))
    dataset = registry.datasets["reversed"](count=5, seed=1)
    assert len(dataset.pairs) == 5 and all(t == s[::-1] for s, t in dataset.pairs)
    registry.manager.hook.on_epoch_end(record={"epoch": 3, "valid_loss": 0.5}, out_dir=None)
    assert '{"epoch": 3, "valid_loss": 0.5}' in capsys.readouterr().out
