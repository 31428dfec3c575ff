"""Exporting a model directory to another format through a registered exporter (the
``register_exporters`` hook): ``seq2seq-kit export --model DIR --format NAME --out PATH``.

The core checks the model (integrity, finite weights) and the output place, then lets the
exporter write into a fresh directory beside ``out`` and moves it into place with
:func:`seq2seq_kit.checkpoint.swap_in`: a failed or interrupted export leaves ``out`` as it
was. The core imports no exporter's framework: the plugin does, when called.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint import load_checkpoint, swap_in
from .errors import ExportError
from .plugins import install_hint, registry


def export_formats() -> list[str]:
    """The names of the installed export formats, sorted."""
    return sorted(registry().exporters)


def export_model(
    model: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write the model directory ``model`` in ``format`` at ``out``; returns the files
    written (under ``out``).

    Raises:
        ExportError: an unknown format (naming the installed ones), an empty ``out``, an
            ``out`` that is a file, the model directory itself or a directory holding it,
            or a non-empty directory without
            ``overwrite``; or what the exporter cannot express.
        CheckpointError: a missing, damaged or diverged (non-finite) model.
    """
    exporters = registry().exporters
    if format not in exporters:
        installed = ", ".join(export_formats()) or "none"
        # the first-party formats come with the backends of the same name
        hint = install_hint(format)
        how = f"install it: {hint}" if hint else "a plugin adds one through register_exporters"
        raise ExportError(f"unknown export format {format!r} (installed: {installed}); {how}")
    ckpt = load_checkpoint(model, finite=True)
    if not str(out).strip():
        raise ExportError("--out is empty; name the directory to write")
    out = Path(out)
    _check_out(Path(model), out, overwrite)
    made = [p for p in reversed(out.absolute().parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    done = False
    try:
        target = tmp / out.name
        written = exporters[format](ckpt, target)
        missing = [str(p) for p in written if not Path(p).is_file()]
        if missing or not target.is_dir():
            raise ExportError(f"the {format!r} exporter did not write what it reported: {missing}")
        os.chmod(target, 0o755)
        swap_in(target, out)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:  # a failed export leaves no directory it made behind either
            for parent in reversed(made):
                with contextlib.suppress(OSError):
                    parent.rmdir()
    return [out / Path(p).relative_to(target) for p in written]


def _check_out(model: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; --out names the directory to write")
    if out.resolve() == model.resolve():
        raise ExportError(f"{out}: is the model directory itself; export elsewhere")
    if out.resolve() in model.resolve().parents:
        # replacing it would delete the model with everything else in it
        raise ExportError(f"{out}: holds the model directory {model}; export elsewhere")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out}: exists and is not empty; pass --overwrite to replace it")
