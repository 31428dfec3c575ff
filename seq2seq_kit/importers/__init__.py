"""Importing a model another toolkit saved, through a registered importer (the
``register_importers`` hook): ``seq2seq-kit import --format NAME --from DIR --out MODEL``.

An importer reads the foreign directory into a :class:`~seq2seq_kit.checkpoint.Checkpoint`
(weights in the canonical layout, both vocabularies with their tokenizers, ``meta["imported"]``
saying where it came from); the core writes it as training writes a model directory
(:func:`seq2seq_kit.checkpoint.save_checkpoint`: atomic, in place, every file under its
SHA-256), so an imported model is an ordinary one to every command that reads a model. The
output directory follows the rules of ``train --out`` and ``export --out``: new, empty, or
a model directory replaced only with ``overwrite``. The first-party importer is
:mod:`seq2seq_kit.importers.marian` (Hugging Face ``MarianMTModel``, OPUS-MT).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..checkpoint import check_output_dir, is_model_dir, save_checkpoint, writer_lock
from ..errors import CheckpointError, ModelImportError, option
from ..plugins import registry
from ..version import __version__


def import_formats() -> list[str]:
    """The names of the installed import formats, sorted."""
    return sorted(registry().importers)


def import_model(
    format: str,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Read the model directory ``source`` of another toolkit with the importer ``format``
    and save it as a model directory at ``out``; returns ``out``, resolved.

    The output place is checked before anything is read, and nothing is written there until
    the importer has read and checked the whole model.

    Raises:
        ModelImportError: an unknown format (naming the installed ones), or what the
            importer refuses (naming the file and the key).
        CheckpointError: ``out`` is a file, a folder of other files, or a model directory
            without ``overwrite``; another process writes it; writing failed.
    """
    importers = registry().importers
    if format not in importers:
        installed = ", ".join(import_formats()) or "none"
        raise ModelImportError(
            f"unknown import format {format!r} (installed: {installed}); a plugin adds one "
            f"through register_importers"
        )
    if not str(out).strip():
        raise ModelImportError(f"{option('out', '')} is empty; name the directory to write")
    out = Path(out)
    if out.exists() and is_model_dir(out) and not overwrite:
        raise CheckpointError(
            f"{out}: already holds a model; replace it with {option('overwrite')}, or name "
            f"another directory"
        )
    made = not out.exists()
    check_output_dir(out, replace=overwrite)
    try:
        ckpt = importers[format](Path(source))
    except BaseException:
        if made:  # the check created it: leave no empty directory behind a refusal
            _remove_empty(out)
        raise
    ckpt.meta = {"seq2seq_kit_version": __version__, **ckpt.meta}
    with writer_lock(out):
        return save_checkpoint(ckpt, out, claimed=True)


def _remove_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (someone else's files): left as it is
        path.rmdir()
