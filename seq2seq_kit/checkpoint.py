"""Checkpoints: a directory with ``model.json`` and ``weights.safetensors``.

``model.json`` holds the format version, the model spec, both vocabularies, decoding
defaults and training metadata, plus the SHA-256 of the weights file so that a truncated or
altered file is caught before use. Weights are safetensors: loading parses a header and
copies arrays, it never unpickles or executes anything.

Saving is atomic: the new checkpoint is written and synced in a sibling temporary directory,
then swapped in by two renames. A crash at any point leaves either the old or the new
checkpoint loadable; between the two renames the old one lives in ``.NAME.previous``, which
:func:`load_checkpoint` falls back to and the next save moves back first. One process
writes a given directory at a time: :func:`writer_lock` holds ``.NAME.lock`` beside it.
A failed write (disk full, no permission) is a :class:`CheckpointError` naming the path and
leaves the previous checkpoint as it was. Non-finite weights are never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, option
from .spec import Spec, spec_from_dict
from .vocab import Vocabulary
from .weights import check_weights

FORMAT = "seq2seq-kit"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: What a save writes (model.json and the tensor files training saves); anything else in a
#: model directory is the user's and is kept.
OWN_FILES = frozenset({MODEL_FILE, WEIGHTS_FILE, "last.safetensors", "optimizer.safetensors"})


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model in any backend."""

    spec: Spec
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    weights: dict[str, np.ndarray]
    max_length: int = 50
    meta: dict[str, Any] = field(default_factory=dict)
    #: further tensor files by name, e.g. ``{"last": weights, "optimizer": adam_state}``
    #: for resuming; each is written as ``NAME.safetensors`` and checked like the weights.
    extra: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _previous(path: Path) -> Path:
    return path.parent / f".{path.name}.previous"


def non_finite(weights: dict[str, np.ndarray]) -> list[str]:
    """Names of the tensors holding a NaN or an infinity, sorted."""
    return sorted(name for name, w in weights.items() if not np.isfinite(w).all())


def check_output_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Path:
    """Check, before any work, that a model directory can be written at ``path``: it is
    absent, an empty directory, or (with ``replace``) a model directory; and its folder is
    writable (a file is created there and removed). Creates missing parent folders.

    Raises:
        CheckpointError: naming ``path`` and what is wrong; an existing model directory
            without ``replace`` names the options to resume or overwrite it, as the
            interface running spells them (:func:`seq2seq_kit.errors.option`).
    """
    path = Path(path)
    _refuse_foreign(path)
    if (path / MODEL_FILE).exists() and not replace:
        raise CheckpointError(
            f"{path}: already holds a model; continue its training with "
            f"{option('resume', path)}, or replace it with {option('overwrite')} (config "
            f"train.overwrite = true)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot write there ({exc.strerror or exc}: {exc.filename or path.parent})"
        ) from None
    return path


def _refuse_foreign(path: Path) -> None:
    """A file, or a non-empty folder that is no model directory, is never overwritten."""
    if path.exists() and (
        not path.is_dir() or (any(path.iterdir()) and not (path / MODEL_FILE).exists())
    ):
        raise CheckpointError(f"{path}: exists and is not a model directory; not overwriting it")


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside model directory ``path`` (an OS file lock, released when the
    process ends, even by a kill) for as long as the block runs.

    Raises:
        CheckpointError: another process holds it, naming the directory.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    lock = FileLock(path.parent / f".{path.name}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CheckpointError(
            f"{path}: another training is writing this model directory (it holds "
            f"{lock.lock_file}); wait for it to end or choose another output directory"
        ) from None
    try:
        yield
    finally:
        lock.release()


def save_checkpoint(
    ckpt: Checkpoint, path: str | os.PathLike[str], *, claimed: bool = False
) -> Path:
    """Write ``ckpt`` to directory ``path`` atomically, replacing an older checkpoint there.
    Other files in the directory are kept. ``claimed``: the caller checked the directory with
    :func:`check_output_dir` and holds its :func:`writer_lock`, so files that appeared in it
    since (a note, a log) are no reason to refuse.

    Raises:
        CheckpointError: ``path`` exists and is not a checkpoint directory (it is never
            overwritten), the weights do not match the spec or are not finite, or writing
            failed (disk full, no permission: names the path; the previous checkpoint
            stays as it was).
    """
    path = Path(path).resolve()  # a symlink's target is what gets swapped, not the link
    if not claimed:
        _refuse_foreign(path)
    try:
        check_weights(ckpt.spec, ckpt.weights)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    for name, tensors in {"weights": ckpt.weights, **ckpt.extra}.items():
        bad = non_finite(tensors)
        if bad:
            raise CheckpointError(f"{path}: not saving {name} with NaN or infinite values in {bad}")
    try:
        return _write(ckpt, path)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: writing the model directory failed ({exc.strerror or exc}); the previous "
            f"checkpoint there, if any, is unchanged"
        ) from None


def _write(ckpt: Checkpoint, path: Path) -> Path:
    from safetensors import SafetensorError

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _previous(path)
    if not path.exists() and (previous / MODEL_FILE).exists():
        os.rename(previous, path)  # finish the swap an interrupted save left half done
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a save that was killed
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    # mkdtemp makes a private (0700) folder: give the new directory the old one's mode
    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o755)
    try:
        return _fill_and_swap(ckpt, path, tmp)
    except SafetensorError as exc:  # safetensors reports I/O failures (ENOSPC) as its own
        raise OSError(str(exc)) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _carry_other_files(path: Path, tmp: Path) -> None:
    """Hard-link into ``tmp`` whatever ``path`` holds besides the checkpoint's own files
    (plots, notes, logs, a data file; folders as trees of links), so that swapping ``tmp`` in
    keeps them, and a file a program keeps open stays the same file."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        target = tmp / child.name
        if target.exists() or child.name in OWN_FILES:
            continue  # written anew
        if child.is_symlink():
            os.symlink(os.readlink(child), target)
        elif child.is_dir():
            shutil.copytree(child, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(child, target)


def _link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    try:
        os.link(source, target)
    except OSError:  # links not allowed here (or a FIFO, a socket): a copy, or nothing
        with contextlib.suppress(OSError):
            shutil.copy2(source, target)


def _fill_and_swap(ckpt: Checkpoint, path: Path, tmp: Path) -> Path:
    """Write every file into ``tmp``, sync it, then swap it in for ``path``."""
    from safetensors.numpy import save_file

    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in ckpt.weights.items()}
    save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
    extra = {}
    for name, tensors in ckpt.extra.items():
        filename = f"{name}.safetensors"
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / filename))
        extra[name] = {
            "file": filename,
            "sha256": _sha256(tmp / filename),
            # safetensors stores 0-d arrays as shape (1,): remember which were scalars
            "scalars": sorted(k for k, v in arrays.items() if v.ndim == 0),
        }
    tokenizer_files = {}
    for side, vocab in (("source", ckpt.source_vocab), ("target", ckpt.target_vocab)):
        for name in vocab.tokenizer.save(tmp, f"{side}-"):
            tokenizer_files[name] = _sha256(tmp / name)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": ckpt.spec.to_dict(),
        "source_vocab": ckpt.source_vocab.to_dict(),
        "target_vocab": ckpt.target_vocab.to_dict(),
        "max_length": ckpt.max_length,
        "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(tmp / WEIGHTS_FILE)},
        "extra": extra,
        "tokenizer_files": tokenizer_files,
        "meta": ckpt.meta,
    }
    (tmp / MODEL_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    _carry_other_files(path, tmp)
    swap_in(tmp, path)
    return path


def swap_in(tmp: Path, path: Path) -> None:
    """Put the finished directory ``tmp`` in the place of ``path``: ``tmp``'s files and
    folders are synced first, the old one is renamed aside and removed after, so a crash
    leaves the old or the new one whole."""
    for child in tmp.rglob("*"):
        if not child.is_symlink():
            _fsync(child)
    _fsync(tmp)
    previous = _previous(path)
    if previous.exists():
        shutil.rmtree(previous)
    if path.exists():
        os.rename(path, previous)
    os.rename(tmp, path)
    _fsync(path.parent)
    shutil.rmtree(previous, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike[str], extra: bool = False, finite: bool = False
) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`; with ``extra``, also
    its further tensor files (for resuming training).

    Raises:
        CheckpointError: the directory or a file is missing, ``model.json`` is not valid
            JSON or comes from a newer format version, or the weights file is truncated,
            corrupted or does not match the spec; with ``finite``, weights holding NaN or
            infinite values (a diverged run: nothing to decode with). Nothing is written.
    """
    path = Path(path)
    if not (path / MODEL_FILE).exists() and (_previous(path) / MODEL_FILE).exists():
        path = _previous(path)  # a save was interrupted between its two renames
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    model_file = path / MODEL_FILE
    try:
        doc = json.loads(model_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{model_file}: missing; is {path} a model directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{model_file}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{model_file}: not a {FORMAT} model file")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{model_file}: format version {version!r} is newer than this seq2seq-kit reads "
            f"({FORMAT_VERSION}); upgrade seq2seq-kit"
        )
    try:
        spec = spec_from_dict(doc["spec"])
        for name, sha in doc.get("tokenizer_files", {}).items():
            file, sha = _file_entry(path, {"file": name, "sha256": sha})
            _verify(file, sha, model_file)
        source_vocab, target_vocab = _vocabularies(doc, path, model_file)
        weights_file, expected_sha = _file_entry(path, doc["weights"])
        max_length = doc.get("max_length", 50)
        if type(max_length) is not int or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be an object, got {type(meta).__name__}")
        extras = doc.get("extra", {}) if extra else {}
        entries = {name: (_file_entry(path, info), info) for name, info in extras.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{model_file}: malformed ({type(exc).__name__}: {exc})") from None
    weights = _read_verified(weights_file, expected_sha, model_file)
    try:
        check_weights(spec, weights)
    except ValueError as exc:
        raise CheckpointError(f"{weights_file}: {exc}") from None
    tensors = {}
    for name, ((file, sha), info) in entries.items():
        arrays = _read_verified(file, sha, model_file)
        for key in info.get("scalars", []):
            if key not in arrays:
                raise CheckpointError(f"{model_file}: malformed (extra.{name}: no {key!r})")
            arrays[key] = arrays[key].reshape(())
        tensors[name] = arrays
    bad = non_finite(weights) if finite else []
    if bad:
        raise CheckpointError(
            f"{weights_file}: weights {bad} hold NaN or infinite values (training diverged); "
            f"retrain, e.g. with a smaller learning rate"
        )
    return Checkpoint(spec, source_vocab, target_vocab, weights, max_length, meta, tensors)


def _vocabularies(doc: dict[str, Any], path: Path, model_file: Path) -> tuple[Any, Any]:
    """Both vocabularies, each tokenizer reading its files; a tokenizer this installation
    lacks (a plugin's) is named as such, not as a damaged file."""
    from .plugins import registry

    vocabularies = []
    for side in ("source", "target"):
        data = doc[f"{side}_vocab"]
        name = data.get("tokenizer", "char") if isinstance(data, dict) else None
        if isinstance(name, str) and name not in registry().tokenizers:
            raise CheckpointError(
                f"{model_file}: the {side} side needs tokenizer {name!r}, which is not "
                f"installed (installed: {', '.join(sorted(registry().tokenizers))}); install "
                f"the plugin that registers it"
            )
        vocabularies.append(Vocabulary.from_dict(data, path, f"{side}-"))
    return vocabularies[0], vocabularies[1]


def _file_entry(path: Path, info: Any) -> tuple[Path, str]:
    """The file and SHA-256 of a ``{"file": NAME, "sha256": HEX}`` entry; NAME must be a
    plain file name inside the model directory."""
    name, sha = info["file"], info["sha256"]
    if not isinstance(name, str) or not isinstance(sha, str) or Path(name).name != name:
        raise ValueError(f"file entry {info!r} must name a file inside the directory")
    if name in ("", ".", ".."):
        raise ValueError(f"file entry {info!r} must name a file inside the directory")
    return path / name, sha


def _verify(path: Path, sha256: str, model_file: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    if _sha256(path) != sha256:
        raise CheckpointError(f"{path}: corrupted or truncated (SHA-256 differs from {model_file})")


def _read_verified(path: Path, sha256: str, model_file: Path) -> dict[str, np.ndarray]:
    _verify(path, sha256, model_file)
    return _read_weights(path)


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
