import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
from plugin_install import setuptools_builds_offline

import seq2seq_kit
from seq2seq_kit import hookimpl, plugins
from seq2seq_kit.errors import BackendError
from seq2seq_kit.plugins import Registry, build_registry, get_backend

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def on_path(folder):
    """PYTHONPATH with ``folder`` first, keeping the copy of seq2seq-kit under test."""
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)


def python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env
    )


def test_import_loads_no_framework():
    res = python(
        "import sys, seq2seq_kit, seq2seq_kit.cli;"
        "from seq2seq_kit.plugins import registry; registry();"
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_backends_command_lists_numpy():
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends", "--json"], capture_output=True, text=True
    )
    listing = json.loads(res.stdout)
    numpy = next(b for b in listing["backends"] if b["name"] == "numpy")
    assert numpy["version"] and numpy["distribution"] == "seq2seq-kit-numpy"
    assert {"train", "beam"} <= set(numpy["capabilities"])


def test_backends_text_has_a_header_row_and_the_formats_lines():
    """The text listing is the JSON one in columns under a header, with the export and
    import formats lines (``none`` where no plugin adds one)."""
    run = [sys.executable, "-m", "seq2seq_kit", "backends"]
    listing = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True).stdout)
    lines = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    header, rows = lines[0], lines[1 : 1 + len(listing["backends"])]
    assert header.split() == ["name", "version", "distribution", "capabilities"]
    for key in ("version", "distribution", "capabilities"):  # each row in the columns
        column = header.index(key)
        assert all(row[column - 1] == " " and row[column] != " " for row in rows)
    for backend, row in zip(listing["backends"], rows, strict=True):
        assert row.split()[:3] == [backend[k] for k in ("name", "version", "distribution")]
        assert row[header.index("capabilities") :].startswith(", ".join(backend["capabilities"]))
    for kind in ("export", "import"):
        (line,) = [line for line in lines if line.startswith(f"{kind} formats: ")]
        named = listing[f"{kind}_formats"]
        # an export format may be followed by the quantization schemes it writes
        names = re.sub(r" \([^)]*\)", "", line.removeprefix(f"{kind} formats: "))
        assert names.startswith(", ".join(named) or "none")


def fake_distribution(root, dist, module, source, entry_name):
    """A plugin installed the way pip leaves one: a module plus a .dist-info directory."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[seq2seq_kit]\n{entry_name} = {module}\n")


BACKEND_PLUGIN = """
from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

@hookimpl
def register_backends(register):
    register(Backend(name={name!r}, version="0.1", capabilities=frozenset({{"train"}}),
                     build=lambda spec, **kw: None))
"""


def test_broken_and_duplicate_plugins_do_not_stop_the_others(tmp_path):
    fake_distribution(
        tmp_path, "broken-plugin", "broken_plugin", "raise RuntimeError('boom')\n", "broken"
    )
    fake_distribution(
        tmp_path,
        "bad-hook",
        "bad_hook",
        """
        from seq2seq_kit import hookimpl
        @hookimpl
        def register_backends(register):
            raise ValueError("cannot register")
    """,
        "badhook",
    )
    fake_distribution(
        tmp_path, "numpy-clone", "numpy_clone", BACKEND_PLUGIN.format(name="numpy"), "zclone"
    )
    fake_distribution(
        tmp_path, "extra-backend", "extra_backend", BACKEND_PLUGIN.format(name="extra"), "extra"
    )
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": on_path(tmp_path)},
    )
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    names = {b["name"]: b["distribution"] for b in listing["backends"]}
    assert names["numpy"] == "seq2seq-kit-numpy" and names["extra"] == "extra-backend"
    errors = listing["errors"]
    assert "RuntimeError: boom" in errors["broken"]
    assert "cannot register" in errors["badhook"]
    duplicate = errors["zclone:numpy"]
    assert "seq2seq-kit-numpy" in duplicate and "numpy-clone" in duplicate


def test_allowlist_env_var(tmp_path):
    fake_distribution(
        tmp_path, "extra-backend", "extra_backend", BACKEND_PLUGIN.format(name="extra"), "extra"
    )
    code = "from seq2seq_kit.plugins import registry; print(sorted(registry().backends))"
    env = {"PYTHONPATH": on_path(tmp_path)}
    everything = python(code, **env).stdout.strip()
    assert "'extra'" in everything and "'numpy'" in everything
    assert python(code, SEQ2SEQ_KIT_PLUGINS="extra", **env).stdout.strip() == "['extra']"
    assert python(code, SEQ2SEQ_KIT_PLUGINS="seq2seq-kit-numpy", **env).stdout.strip() == (
        "['numpy']"
    )
    assert python(code, SEQ2SEQ_KIT_PLUGINS="", **env).stdout.strip() == "[]"


def test_unknown_backend_error():
    with pytest.raises(BackendError, match=r"'nope' is not installed \(installed: .*numpy"):
        get_backend("nope")


TWICE_PLUGIN = (
    BACKEND_PLUGIN.format(name="twice")
    + """
seen = []

@hookimpl
def on_epoch_end(record, out_dir):
    seen.append(record["epoch"])
"""
)


class Impostor:
    """Another plugin under a name already taken."""

    def __init__(self, name):
        self.__name__ = name

    @hookimpl
    def register_backends(self, register):
        pass


def test_a_plugin_found_twice_is_registered_once(tmp_path, monkeypatch):
    # installed (its entry point finds it) and passed as an extra plugin: one module object
    fake_distribution(tmp_path, "twice-plugin", "twice_plugin", TWICE_PLUGIN, "twice")
    monkeypatch.syspath_prepend(str(tmp_path))
    import twice_plugin

    impostor = Impostor("twice")
    try:
        reg = build_registry(extra_plugins=(twice_plugin, impostor))
    finally:
        sys.modules.pop("twice_plugin", None)
    assert reg.manager.is_registered(twice_plugin), reg.failures
    assert reg.manager.get_name(twice_plugin) == "twice"
    assert reg.backends["twice"].distribution == "twice-plugin"
    assert [k for k in reg.failures if "twice" in k] == ["twice"]
    assert "already registered" in reg.failures["twice"]  # the impostor, not the plugin
    assert not reg.manager.is_registered(impostor)
    reg.manager.hook.on_epoch_end(record={"epoch": 1}, out_dir=None)
    assert twice_plugin.seen == [1]


def test_missing_first_party_backend_names_a_command_that_installs_it(monkeypatch):
    monkeypatch.setattr(plugins, "registry", lambda: Registry(pluggy.PluginManager("x")))
    with pytest.raises(BackendError) as info:
        get_backend("keras")
    message = str(info.value)
    assert "seq2seq-kit[keras]" not in message  # no index serves it
    tree = Path(seq2seq_kit.__file__).resolve().parents[1]
    if not (tree / "backends" / "keras" / "pyproject.toml").is_file():
        assert "-e backends/keras, run in a seq2seq-kit source checkout" in message
        return
    found = re.search(r"install it with: pip install -c (\S+) -e (\S+)$", message)
    assert found, message
    assert Path(found.group(1)).resolve() == tree / "constraints.txt"
    folder = Path(found.group(2)).resolve()
    assert folder == tree / "backends" / "keras"
    if not setuptools_builds_offline():
        pytest.skip("setuptools >= 77 is needed to read the backend's metadata offline")
    dry_run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps"]
        + ["--no-build-isolation", "-e", str(folder)],
        capture_output=True,
        text=True,
    )
    assert "Would install seq2seq-kit-keras" in dry_run.stdout, dry_run.stderr


def test_backends_excluded_by_the_allowlist_are_named(tmp_path):
    fake_distribution(
        tmp_path, "extra-backend", "extra_backend", BACKEND_PLUGIN.format(name="extra"), "extra"
    )
    env = {"PYTHONPATH": on_path(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends"],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "SEQ2SEQ_KIT_PLUGINS": "nonsense"},
    )
    assert res.returncode == 0, res.stderr
    assert "no backends installed" not in res.stdout
    assert "no backends loaded: SEQ2SEQ_KIT_PLUGINS='nonsense'" in res.stdout
    assert re.search(r"excluded the plugins .*extra, .*numpy", res.stdout)
    assert "no installed plugin is named 'nonsense'" in res.stdout

    res = python(
        "from seq2seq_kit.plugins import get_backend; get_backend('extra')",
        SEQ2SEQ_KIT_PLUGINS="numpy",
        **env,
    )
    assert "backend 'extra' is installed but not loaded (loaded: numpy)" in res.stderr
    assert "SEQ2SEQ_KIT_PLUGINS='numpy' excludes its plugin 'extra'" in res.stderr


def test_create_refuses_a_spec_beyond_the_declared_capabilities():
    from seq2seq_kit.backend import Backend
    from seq2seq_kit.spec import ModelSpec

    built = []
    limited = Backend("limited", "1", frozenset({"train"}), lambda spec, **kw: built.append(spec))
    with pytest.raises(BackendError, match=r"'limited' cannot build .*\['attention', 'gru'\]"):
        limited.create(ModelSpec(5, 5, cell="gru", attention="dot"))
    assert built == []
    limited.create(ModelSpec(5, 5))
    assert len(built) == 1


def test_distribution_version_reads_the_installed_metadata_else_a_source_tree_version():
    from seq2seq_kit.backend import distribution_version

    assert distribution_version("pluggy") == pluggy.__version__
    assert distribution_version("seq2seq-kit-not-installed-anywhere") == "0.0.0"


def test_the_named_capability_sets_are_what_specs_and_runtimes_require():
    from seq2seq_kit.backend import (
        KNOWN_CAPABILITIES,
        required_capabilities,
        runtime_capabilities,
    )
    from seq2seq_kit.capabilities import MODEL, QUANTIZATION, RUNTIME, SEARCH_OPTIONS, TRAINING
    from seq2seq_kit.decoding import SEARCH_OPTION_CAPABILITIES
    from seq2seq_kit.runtime import Runtime, SingleProcess
    from seq2seq_kit.spec import ModelSpec, TransformerSpec

    everything = ModelSpec(
        5, 5, embedding_size=4, num_layers=2, cell="gru", bidirectional=True, attention="dot"
    )
    rnn = required_capabilities(everything) | required_capabilities(ModelSpec(5, 5, dropout=0.1))
    assert rnn | required_capabilities(TransformerSpec(5, 5)) == MODEL
    busiest = Runtime(device="cuda", precision="bf16", group=SingleProcess(world_size=2))
    assert runtime_capabilities(busiest) == RUNTIME
    # each scheme is the capability of its own name
    schemes = {runtime_capabilities(Runtime(quantization=s)).pop() for s in QUANTIZATION}
    assert schemes == QUANTIZATION
    with pytest.raises(ValueError, match="unknown quantization 'int4'; one of: int8"):
        runtime_capabilities(Runtime(quantization="int4"))
    assert {"train", "resume", "freeze", "ema"} == TRAINING
    assert set(SEARCH_OPTION_CAPABILITIES.values()) == SEARCH_OPTIONS
    named = MODEL | TRAINING | RUNTIME | SEARCH_OPTIONS | QUANTIZATION
    assert sorted(KNOWN_CAPABILITIES - named) == ["beam", "search"]
