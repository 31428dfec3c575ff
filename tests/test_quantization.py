"""Quantization in the core: the schemes an exporter registers and writes (recorded in the
export's manifest, shown by ``info`` with the file sizes), the scheme a backend runs a model
in (``Runtime.quantization``, a capability per scheme), and everything else refused by name.
The backends' quantized numerics are checked by the conformance suite
(``seq2seq_kit.testing.quantized``) and their own tests."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

import seq2seq_kit
from seq2seq_kit import export as export_module
from seq2seq_kit import hookimpl
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.errors import BackendError, ConfigError, ExportError
from seq2seq_kit.plugins import build_registry, get_backend
from seq2seq_kit.quantization import SCHEMES
from seq2seq_kit.runtime import Runtime
from seq2seq_kit.spec import ModelSpec

#: The bytes per weight the toy format stores, by scheme.
WIDTH = {None: 4, "int8": 1, "int16": 2}


def toy_exporter(checkpoint, out: Path, quantization: str | None = None) -> list[Path]:
    """Writes the weights as ``model.bin``, in as many bytes each as the scheme keeps."""
    out.mkdir()
    count = sum(int(w.size) for w in checkpoint.weights.values())
    (out / "model.bin").write_bytes(b"\x01" * count * WIDTH[quantization])
    (out / "scheme.txt").write_text(f"{quantization}\n")
    return [out / "model.bin", out / "scheme.txt"]


def float_exporter(checkpoint, out: Path) -> list[Path]:
    """An exporter of the first contract: no ``quantization`` parameter."""
    out.mkdir()
    (out / "model.bin").write_bytes(b"\x02" * 8)
    return [out / "model.bin"]


@pytest.fixture
def formats(monkeypatch):
    plugin = types.ModuleType("toy_quantizing_exporter")

    def register_exporters(register):
        register("toy", toy_exporter, {"int8", "int16"})
        register("plain", float_exporter)
        register("odd", toy_exporter, {"int4"})  # no such scheme: this format is dropped

    plugin.register_exporters = hookimpl(register_exporters)
    reg = build_registry(extra_plugins=(plugin,))
    monkeypatch.setattr(export_module, "registry", lambda: reg)
    return reg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config = Config()
    config.train.epochs, config.train.progress = 1, False
    out = tmp_path_factory.mktemp("quantization") / "digits"
    seq2seq_kit.train(config, out=out)
    return out


def test_an_exporter_registers_the_schemes_it_writes(formats):
    assert formats.export_schemes["toy"] == {"int8", "int16"}
    assert formats.export_schemes["plain"] == frozenset()
    assert "odd" not in formats.exporters and "odd" not in formats.export_schemes
    failure = formats.failures["toy_quantizing_exporter:export:odd"]
    assert "unknown quantization 'int4'" in failure


def test_a_quantized_export_is_written_and_recorded(model_dir, tmp_path, formats, capsys):
    sizes = {}
    for scheme in (None, "int8", "int16"):
        out = tmp_path / str(scheme)
        flags = [] if scheme is None else ["--quantization", scheme]
        args = ["export", "--model", str(model_dir), "--format", "toy", "--out", str(out)]
        assert main([*args, *flags]) == 0
        assert (out / "scheme.txt").read_text() == f"{scheme}\n"  # the exporter was asked
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["quantization"] == scheme
        sizes[scheme] = (out / "model.bin").stat().st_size
    assert sizes[None] == 4 * sizes["int8"] == 2 * sizes["int16"]
    capsys.readouterr()

    assert main(["info", "--model", str(tmp_path / "int8")]) == 0
    shown = capsys.readouterr().out
    assert "export:       toy (written by seq2seq-kit" in shown
    assert "quantization: int8" in shown
    assert f"({sizes['int8']} bytes)" in shown and "model.bin" in shown
    assert main(["info", "--model", str(tmp_path / "None"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["quantization"] is None and summary["format"] == "toy"
    assert summary["files"]["model.bin"] == sizes[None]
    assert summary["bytes"] == sum(p.stat().st_size for p in (tmp_path / "None").iterdir())


def test_translating_an_export_says_how_to_run_it(model_dir, tmp_path, formats, capsys):
    out = tmp_path / "out"
    export_module.export_model(model_dir, "toy", out, quantization="int8")
    assert main(["translate", "--model", str(out), "7"]) == 2
    err = capsys.readouterr().err
    assert "is an export (toy), not a model directory" in err
    assert "with the plugin that wrote it" in err


def test_info_checks_an_export_before_describing_it(model_dir, tmp_path, formats, capsys):
    out = tmp_path / "out"
    export_module.export_model(model_dir, "toy", out, quantization="int8")
    (out / "model.bin").write_bytes(b"\x00")
    assert main(["info", "--model", str(out)]) == 2
    assert "model.bin: corrupted or truncated" in capsys.readouterr().err


def test_a_scheme_the_format_does_not_write_is_refused(model_dir, tmp_path, formats, capsys):
    with pytest.raises(ExportError, match="the 'toy' format has no float16 scheme; it writes"):
        export_module.export_model(model_dir, "toy", tmp_path / "a", quantization="float16")
    with pytest.raises(ExportError, match="the 'plain' format has no int8 .* float32 only"):
        export_module.export_model(model_dir, "plain", tmp_path / "b", quantization="int8")
    with pytest.raises(ExportError, match="unknown quantization 'int4'"):
        export_module.export_model(model_dir, "toy", tmp_path / "c", quantization="int4")
    assert not any(tmp_path.iterdir())  # nothing written
    args = ["export", "--model", str(model_dir), "--format", "plain", "--out", str(tmp_path / "d")]
    assert main([*args, "--quantization", "int8"]) == 2
    assert "--quantization int8: the 'plain' format has no int8" in capsys.readouterr().err
    # an exporter of the first contract still writes float32 exports
    assert main(args) == 0
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["quantization"] is None


def test_the_flag_takes_the_schemes_only(model_dir, tmp_path, capsys):
    for command in (["export", "--format", "onnx", "--out", str(tmp_path)], ["translate"]):
        with pytest.raises(SystemExit) as exc:
            main([command[0], "--model", str(model_dir), *command[1:], "--quantization", "int4"])
        assert exc.value.code == 2
        assert "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    shown = capsys.readouterr().out
    assert all(scheme in shown for scheme in SCHEMES)


def test_a_backend_without_the_scheme_refuses_it_by_name(model_dir, capsys):
    spec = ModelSpec(13, 13)
    with pytest.raises(BackendError, match="does not run models quantized to int8 .* float32 only"):
        get_backend("numpy").create(spec, runtime=Runtime(quantization="int8"))
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        get_backend("numpy").create(spec, runtime=Runtime(quantization="int4"))
    with pytest.raises(ConfigError, match="quantization='int4': unknown quantization"):
        seq2seq_kit.load(model_dir, backend="numpy", quantization="int4")
    assert main(["translate", "--model", str(model_dir), "--quantization", "int8", "7"]) == 2
    err = capsys.readouterr().err
    assert "backend 'numpy' does not run models quantized to int8" in err
    evaluate = ["evaluate", "--model", str(model_dir), "--data", "digits"]
    assert main([*evaluate, "--quantization", "int16"]) == 2
    assert "does not run models quantized to int16" in capsys.readouterr().err


def test_backends_lists_the_schemes_each_format_writes(formats, monkeypatch, capsys):
    from seq2seq_kit import plugins

    monkeypatch.setattr(plugins, "registry", lambda: formats)
    assert main(["backends"]) == 0
    assert "plain, toy (--quantization int8|int16)" in capsys.readouterr().out
    assert main(["backends", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["export_quantization"]["plain"] == []
    assert listing["export_quantization"]["toy"] == ["int16", "int8"]
