"""Exporting a model directory to another format through a registered exporter (the
``register_exporters`` hook): ``seq2seq-kit export --model DIR --format NAME --out PATH``,
and reading an export back with its integrity checked (:func:`open_export`).

The core checks the model (integrity, finite weights) and the output place, lets the
exporter write a new folder inside a hidden staging folder of ``out``, adds
``manifest.json`` (the format, and the SHA-256 of every file) and moves the files into
place, the manifest last (:mod:`seq2seq_kit.atomic`): a failed or interrupted export leaves
``out`` as it was, and ``out`` may be a mount point. ``out`` must be new, empty, or an
export this core wrote (it has a manifest); replacing one (``overwrite``) replaces the files
its manifest lists and keeps anything else. A model directory, or a folder holding other
files, is never written into. A symlink named as ``out`` is followed: its target is written
and the link stays. The core imports no exporter's framework: the plugin does, when called.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic
from .checkpoint import MODEL_FILE, Checkpoint, check_vocab_sizes, load_checkpoint
from .errors import ExportError, option
from .integrity import file_sha256, manifest_of, read_json
from .plugins import install_hint, registry
from .quantization import check_scheme
from .spec import Spec, spec_from_dict
from .translator import Translator
from .version import __version__
from .vocab import Vocabulary

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "seq2seq-kit-export"
MANIFEST_VERSION = 1


def export_formats() -> list[str]:
    """The names of the installed export formats, sorted."""
    return sorted(registry().exporters)


def export_model(
    model: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    quantization: str | None = None,
) -> list[Path]:
    """Write the model directory ``model`` in ``format`` at ``out``; returns the files
    written (under ``out``), ``manifest.json`` last. With ``quantization`` (a scheme of
    :data:`seq2seq_kit.quantization.SCHEMES` that the format's exporter registered) the
    exporter writes the model quantized, and the manifest records the scheme
    (``"quantization"``; null for float32).

    Raises:
        ExportError: an unknown format (naming the installed ones), a quantization that
            is no scheme or that the format does not write (naming those it does), an
            empty ``out``, an
            ``out`` that is a file, a model directory (this one or another), a directory
            holding the model, a non-empty folder that is no export, an export without
            ``overwrite``; another export writing ``out``; what the exporter cannot express;
            an exporter writing a folder, a link or ``manifest.json`` itself.
        CheckpointError: a missing, damaged or diverged (non-finite) model.
    """
    exporters = registry().exporters
    if format not in exporters:
        installed = ", ".join(export_formats()) or "none"
        # the first-party formats come with the backends of the same name
        hint = install_hint(format)
        how = f"install it: {hint}" if hint else "a plugin adds one through register_exporters"
        raise ExportError(f"unknown export format {format!r} (installed: {installed}); {how}")
    _check_quantization(format, quantization)
    ckpt = load_checkpoint(model, finite=True)
    if not str(out).strip():
        raise ExportError(f"{option('out', '')} is empty; name the directory to write")
    shown = Path(out)
    try:
        out = shown.resolve()  # a symlink is followed: its target is written, the link stays
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise ExportError(f"{shown}: cannot find the directory it names ({exc})") from None
    _check_out(Path(model), out, overwrite)
    made = [p for p in reversed(out.parents) if not p.exists()]
    done = False
    try:
        with atomic.writer_lock(out):
            _check_out(Path(model), out, overwrite)  # again, now that no one else can write it
            obsolete = set(_manifest_files(out)) | {MANIFEST}
            with atomic.stage(out) as staging:
                names = _run_exporter(exporters[format], format, ckpt, staging, quantization)
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "format_version": MANIFEST_VERSION,
                    "export_format": format,
                    "quantization": quantization,
                    "producer": f"seq2seq-kit {__version__}",
                    "files": {name: file_sha256(staging / name) for name in names},
                }
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
                atomic.commit(out, staging, MANIFEST, obsolete)
        done = True
    except atomic.Refused as exc:
        raise ExportError(f"{shown}: {exc}") from None
    except OSError as exc:
        raise ExportError(
            f"{shown}: writing the export failed ({exc.strerror or exc}: "
            f"{exc.filename or shown}); what was there is unchanged"
        ) from None
    finally:
        if not done:  # a failed export leaves no parent folder it made behind either
            for parent in reversed(made):
                with contextlib.suppress(OSError):
                    parent.rmdir()
    return [shown / name for name in [*names, MANIFEST]]


def _check_quantization(format: str, quantization: str | None) -> None:
    """Refuse a ``quantization`` that is no scheme, or one ``format`` does not write.

    Raises:
        ExportError: naming the schemes the format writes.
    """
    if quantization is None:
        return
    flag = option("quantization", quantization)
    try:
        check_scheme(quantization)
    except ValueError as exc:
        raise ExportError(f"{flag}: {exc}") from None
    schemes = sorted(registry().export_schemes.get(format, ()))
    if quantization not in schemes:
        writes = f"it writes {', '.join(schemes)}" if schemes else "it writes float32 only"
        raise ExportError(f"{flag}: the {format!r} format has no {quantization} scheme; {writes}")


def _run_exporter(
    exporter: Any, format: str, ckpt: Any, staging: Path, quantization: str | None = None
) -> list[str]:
    """Let ``exporter`` write a new folder in ``staging``, then lift its files into
    ``staging`` itself; returns their names, sorted."""
    target = staging / "export"
    options = {} if quantization is None else {"quantization": quantization}
    written = exporter(ckpt, target, **options)
    missing = [str(p) for p in written if not Path(p).is_file()]
    if missing or not target.is_dir():
        raise ExportError(f"the {format!r} exporter did not write what it reported: {missing}")
    names = sorted(child.name for child in target.iterdir())
    for name in names:
        child = target / name
        if name == MANIFEST or not atomic.plain_name(name):
            raise ExportError(f"the {format!r} exporter wrote {name!r}, a name the core keeps")
        if child.is_symlink() or not child.is_file():
            raise ExportError(
                f"the {format!r} exporter wrote {name!r}, which is not a plain file; an "
                f"export is a folder of files"
            )
        os.rename(child, staging / name)
    target.rmdir()
    return names


def _check_out(model: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; {option('out', None)} names the directory to write")
    if out == model.resolve():
        raise ExportError(f"{out}: is the model directory itself; export elsewhere")
    if out in model.resolve().parents:
        raise ExportError(f"{out}: holds the model directory {model}; export elsewhere")
    if not out.is_dir() or not atomic.user_entries(out):
        return
    if (out / MODEL_FILE).exists():
        raise ExportError(f"{out}: is a model directory; export elsewhere, it is never replaced")
    if _manifest(out) is None:
        raise ExportError(
            f"{out}: exists, is not empty and holds no export (no {MANIFEST}); export only "
            f"replaces an export it wrote: choose a new or empty directory"
        )
    if not overwrite:
        raise ExportError(f"{out}: holds an export; pass {option('overwrite')} to replace it")


def _manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of the export in ``out``; None when there is none of this format (a
    ``manifest.json`` of another program is not ours to act on)."""
    manifest = manifest_of(out / MANIFEST, MANIFEST_FORMAT)
    return manifest if manifest is not None and isinstance(manifest.get("files"), dict) else None


def _manifest_files(out: Path) -> list[str]:
    """The files of the export in ``out`` that a new one may remove: those its manifest
    lists that still hold what the export wrote (a file changed since is kept)."""
    manifest = _manifest(out) or {"files": {}}
    names = []
    for name, sha in manifest["files"].items():
        with contextlib.suppress(OSError, ValueError):
            if atomic.plain_name(name) and file_sha256(out / name) == sha:
                names.append(name)
    return names


def open_export(directory: str | os.PathLike[str], format: str) -> dict[str, Path]:
    """Check the export in ``directory`` before anything in it is read: ``manifest.json``
    names ``format``, and every file it lists is a plain file inside the directory (not a
    link) whose SHA-256 matches. Returns ``{name: path}`` of the listed files; a reader
    opens no other.

    Raises:
        ExportError: naming the file: no manifest (not an export, or one written before
            exports had one: export again), not JSON, another format, a newer version, a
            name outside the directory, a file missing, a link, truncated or altered.
    """
    directory = Path(directory)
    if directory.is_dir():
        atomic.finish(directory)
    file = directory / MANIFEST
    try:
        manifest = read_json(file)
    except OSError as exc:
        raise ExportError(
            f"{file}: cannot read it ({exc.strerror or exc}); is {directory} an export? "
            f"(exports written by older versions have none: export again)"
        ) from None
    except ValueError as exc:
        raise ExportError(f"{file}: not valid JSON ({exc})") from None
    try:
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
        version = manifest.get("format_version")
        if type(version) is not int or version > MANIFEST_VERSION:
            raise ValueError(f"format version {version!r} is newer than this seq2seq-kit reads")
        if manifest.get("export_format") != format:
            raise ValueError(f"an export in {manifest.get('export_format')!r}, not {format!r}")
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files must be an object")
    except (ValueError, TypeError, KeyError) as exc:
        raise ExportError(f"{file}: malformed ({type(exc).__name__}: {exc})") from None
    paths = {}
    for name, sha in files.items():
        if not atomic.plain_name(name) or name == MANIFEST:
            raise ExportError(f"{file}: {name!r} is not a file name inside {directory}")
        if not isinstance(sha, str):
            raise ExportError(f"{file}: the SHA-256 of {name!r} is {sha!r}, not a hex string")
        path = directory / name
        try:
            mode = path.lstat().st_mode
        except OSError:
            raise ExportError(f"{path}: missing (listed in {MANIFEST})") from None
        if not stat.S_ISREG(mode):
            raise ExportError(f"{path}: not a plain file (a link or a folder); export again")
        if file_sha256(path) != sha:  # a plain file (checked above): reading it ends
            raise ExportError(f"{path}: corrupted or truncated (SHA-256 differs from {file})")
        paths[name] = path
    return paths


def model_fields(checkpoint: Checkpoint, out: Path) -> dict[str, Any]:
    """What an exporter records of the model so that seq2seq-kit can run the export: the
    ``spec``, both vocabularies (``source_vocab``, ``target_vocab``: pieces and tokenizer,
    as in ``model.json``), ``max_length``, ``tokenizer_files``, the tokenizers' files,
    which it writes into ``out`` (``source-*``, ``target-*``), and ``examples``, the
    inputs to try the model with that its directory keeps. Read back by
    :func:`read_model_fields`."""
    files = []
    for side, vocab in (("source", checkpoint.source_vocab), ("target", checkpoint.target_vocab)):
        files += vocab.tokenizer.save(out, f"{side}-")
    return {
        "max_length": checkpoint.max_length,
        "spec": checkpoint.spec.to_dict(),
        "source_vocab": checkpoint.source_vocab.to_dict(),
        "target_vocab": checkpoint.target_vocab.to_dict(),
        "tokenizer_files": sorted(files),
        "examples": list(checkpoint.meta.get("examples") or []),
    }


def read_model_fields(
    meta: dict[str, Any], directory: Path, file: Path
) -> tuple[Spec, Vocabulary, Vocabulary, int]:
    """``(spec, source vocabulary, target vocabulary, max_length)`` of the fields
    :func:`model_fields` wrote into ``meta``, the tokenizers' files read from
    ``directory`` (whose files :func:`open_export` has checked).

    Raises:
        ExportError: naming ``file`` (where ``meta`` was read): a field missing or
            malformed, vocabularies that do not fit the spec.
    """
    try:
        spec = spec_from_dict(meta["spec"])
        source, target = (
            Vocabulary.from_dict(meta[f"{side}_vocab"], directory, f"{side}-")
            for side in ("source", "target")
        )
        check_vocab_sizes(spec, source, target)
        max_length = meta["max_length"]
        if type(max_length) is not int or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"{file}: malformed ({type(exc).__name__}: {exc})") from None
    return spec, source, target, max_length


def export_summary(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """What the export in ``directory`` is, for ``seq2seq-kit info``: ``format`` (the export
    format), ``quantization`` (its scheme; None: float32), ``producer``, ``files`` (name ->
    size in bytes, the manifest's files and the manifest) and ``bytes``, their total. Every
    file is checked first (:func:`open_export`).

    Raises:
        ExportError: no export there (no ``manifest.json`` of this program), or a file
            missing, truncated or altered.
    """
    directory = Path(directory)
    manifest = _manifest(directory)
    if manifest is None:
        raise ExportError(f"{directory}: holds no export ({MANIFEST} of seq2seq-kit missing)")
    format = manifest.get("export_format")
    files = open_export(directory, format if isinstance(format, str) else "")
    sizes = {name: path.stat().st_size for name, path in sorted(files.items())}
    sizes[MANIFEST] = (directory / MANIFEST).stat().st_size
    return {
        "format": format,
        "quantization": manifest.get("quantization"),
        "producer": manifest.get("producer"),
        "files": sizes,
        "bytes": sum(sizes.values()),
    }


@dataclass
class Exported:
    """An export read back by its backend's loader (``seq2seq_kit_onnx.export.load``,
    ``seq2seq_kit_ctranslate2.export.load``).

    Attributes:
        model: the backend's model over the export's files.
        source_vocab, target_vocab: the model's vocabularies, with their tokenizers.
        max_length: the decoding cap saved with the model.
        meta: the export's metadata file (``export.json``) as read.
        backend: the name of the backend that runs it.
    """

    model: Any
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    max_length: int
    meta: dict
    backend: str

    def translator(self) -> Translator:
        """A :class:`seq2seq_kit.Translator` over the export (text in, text out; every
        decoding option the backend takes), its inputs checked as a loaded model's are. It
        has no saved ``[decode]`` settings: the defaults are the core's."""
        from .validation import checked

        return Translator(
            checked(self.model),
            self.source_vocab,
            self.target_vocab,
            backend=self.backend,
            max_length=self.max_length,
        )
