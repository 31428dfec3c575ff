"""The documentation: the backend tutorial's files, assembled from its code blocks, make a
package that installs and passes the conformance suite; reference pages cover every key;
pages render every word; the site publishes pages and images only; the README's test
command, example outputs and timings say what is true."""

import ast
import configparser
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_install import install, listed_backends, run_pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_hooks():
    """The MkDocs hooks module, loaded from its file (it is not an installed module)."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()
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
    from seq2seq_kit.config import section_models

    table = hooks.config_reference()
    for section in ("data", "model", "train", "decode", "serve"):
        for model in section_models(section):  # [model]: each architecture's keys
            for name in model.model_fields:
                assert f"`{section}.{name}`" in table
    # a key both architectures have, with their own defaults, has a row for each
    assert "| `model.dropout` | `0.0` | fixed | rnn: " in table
    assert "| `model.dropout` | `0.1` | fixed | transformer: " in table
    assert table.count("`model.architecture`") == 1
    assert "None |" not in table.replace("`None`", "")  # every key has a description
    help_text = hooks.cli_reference()
    for command in ("train", "translate", "evaluate", "plot", "info", "serve", "backends"):
        assert f"`seq2seq-kit {command}`" in help_text
    assert "{{ config_reference }}" in (DOCS / "configuration.md").read_text()


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
        + ["--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_docs_build_without_warnings(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "configuration" / "index.html").exists()
    html = (tmp_path / "configuration" / "index.html").read_text()
    assert "<code>&lt;unk&gt;</code>" in html
    published = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    from_docs = {p for p in published if (DOCS / p).is_file()}
    assert from_docs == {p for p in from_docs if p.startswith("images/")}
    assert not [p for p in published if p.endswith((".py", ".pyc")) or "__pycache__" in p]


def test_strict_build_refuses_stray_files_and_raw_tags(tmp_path):
    pytest.importorskip("mkdocs")
    yaml = pytest.importorskip("yaml")
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("__pycache__"))
    (docs / "notes.py").write_text("")
    (docs / "hooks.md").write_text((docs / "hooks.md").read_text() + "\nreplaced by <unk>\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / h) for h in config["hooks"]]
    config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "docs/notes.py would be published to the site" in result.stderr
    assert "hooks.md: <unk> outside code" in result.stderr


def test_pages_render_every_word():
    assert hooks.stray_tags("replace by <unk>; `<pad>`, <https://example.org>") == ["<unk>"]
    assert hooks.stray_tags("```text\n<s> one </s>\n```\n``a `<b>` c``") == []
    for page in sorted(DOCS.rglob("*.md")):
        assert hooks.stray_tags(hooks.render(page.read_text())) == [], page.name


def test_docs_folder_holds_only_pages_and_images():
    files = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*") if p.is_file()]
    assert hooks.unpublishable(files) == []
    assert hooks.unpublishable(["a.md", "images/x.png", "hooks.py", "__pycache__/h.pyc"]) == [
        "__pycache__/h.pyc",
        "hooks.py",
    ]


def readme_sections() -> dict[str, str]:
    """README.md by ``## `` heading; the text before the first heading is "first screen"."""
    parts = re.split(r"^## (.+)$", (ROOT / "README.md").read_text(), flags=re.M)
    return {"first screen": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}


def test_readme_names_the_tox_environments_tox_runs():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    env_list = re.split(r"[,\s]+", ini["tox"]["env_list"].strip())
    first_sentence = readme_sections()["Tests"].strip().split(".\n")[0].split(". ")[0]
    listed = [n for n in re.findall(r"`([\w.-]+)`", first_sentence) if n != "tox"]
    assert listed == env_list


CONSOLE = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)


def console_examples(text: str) -> list[tuple[str, str]]:
    """(command, the output shown under it) for each ``$ `` line of the console blocks."""
    examples = []
    for block in CONSOLE.findall(text):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """A folder holding models/digits trained by the README's own command, and an
    environment where ``seq2seq-kit`` is this Python's ``-m seq2seq_kit``; the output."""
    work = tmp_path_factory.mktemp("readme")
    shim = work / "bin" / "seq2seq-kit"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m seq2seq_kit "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SEQ2SEQ_KIT_BACKEND", None)
    command = re.search(r"seq2seq-kit train [^&\n]+", readme_sections()["first screen"]).group()
    trained = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=work, env=env
    )
    assert trained.returncode == 0, trained.stderr
    return work, env, trained.stdout


def test_readme_training_prints_what_it_says(readme_run):
    _, _, output = readme_run
    first_screen = readme_sections()["first screen"]
    claims = re.findall(r"`([^`]+)`", first_screen.split("The first command", 1)[1])
    assert claims == ["1 -> one", "9 -> nine", "exact match on 9 training sources: 9/9"]
    for claim in claims:
        assert claim in output.splitlines()


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_console_examples_print_what_they_show(page, readme_run):
    work, env, _ = readme_run
    examples = console_examples((ROOT / page).read_text())
    assert any("1 2 3" in command for command, _ in examples)
    for command, shown in examples:
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, cwd=work, env=env
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == shown, command


def shown_value(line: str) -> tuple[str, object] | None:
    """For ``EXPRESSION  # LITERAL`` (or ``print(EXPRESSION)  # LITERAL``): the expression's
    source and the literal's value; None for any other line."""
    code, sep, comment = line.partition("  # ")
    if not sep:
        return None
    try:
        tree = ast.parse(code.strip(), mode="eval").body
        value = ast.literal_eval(comment.strip())
    except (SyntaxError, ValueError):
        return None
    if isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "print":
        tree = tree.args[0]
    return ast.unparse(tree), value


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_python_examples_return_what_they_show(page, tmp_path, monkeypatch):
    text = (ROOT / page).read_text()
    block = re.search(r"^```python\n(import seq2seq_kit\n.*?)^```$", text, re.S | re.M).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    checked = 0
    for line in block.splitlines():
        shown = shown_value(line)
        if shown is None:
            exec(line, namespace)
            continue
        expression, value = shown
        assert eval(expression, namespace) == value, line
        checked += 1
    assert checked


TIMING = re.compile(r"\b\d[\d.,]*(?:-\d+)? ?(?:s|ms|min|minutes|seconds?)\b|\ba second\b|/s\b")
FENCED = re.compile(r"^```.*?^```$", re.S | re.M)


def test_timings_state_threads_and_machine_load():
    sections = readme_sections()
    texts = {f"README {name}": sections[name] for name in ("first screen", "Use", "Performance")}
    texts["docs/quickstart.md"] = (DOCS / "quickstart.md").read_text()
    timed = {where: text for where, text in texts.items() if TIMING.search(FENCED.sub("", text))}
    assert {"README first screen", "README Performance", "docs/quickstart.md"} <= set(timed)
    for where, text in timed.items():
        prose = FENCED.sub("", text)
        assert re.search(r"\bthreads?\b", prose), f"{where}: timings without the threads"
        assert re.search(r"\b(idle|busy)\b", prose), f"{where}: timings without the load"


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
