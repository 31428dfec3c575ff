import json
import subprocess
import sys
import textwrap

import pytest

from seq2seq_kit.errors import BackendError

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def python(code, **env):
    import os

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
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
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
    env = {"PYTHONPATH": str(tmp_path)}
    everything = python(code, **env).stdout.strip()
    assert "'extra'" in everything and "'numpy'" in everything
    assert python(code, SEQ2SEQ_KIT_PLUGINS="extra", **env).stdout.strip() == "['extra']"
    assert python(code, SEQ2SEQ_KIT_PLUGINS="seq2seq-kit-numpy", **env).stdout.strip() == (
        "['numpy']"
    )
    assert python(code, SEQ2SEQ_KIT_PLUGINS="", **env).stdout.strip() == "[]"


def test_unknown_backend_error():
    from seq2seq_kit.plugins import get_backend

    with pytest.raises(BackendError, match=r"'nope' is not installed \(installed: .*numpy"):
        get_backend("nope")
    res = python(
        "from seq2seq_kit.plugins import get_backend; get_backend('torch')",
        SEQ2SEQ_KIT_PLUGINS="numpy",
    )
    assert "BackendError" in res.stderr
    assert "pip install seq2seq-kit[torch]" in res.stderr


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
