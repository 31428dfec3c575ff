"""Checkpoints: a directory with ``model.json`` and ``weights.safetensors``.

``model.json`` holds the format version, the model spec, both vocabularies, decoding
defaults and training metadata, the SHA-256 of every file the model reads (weights, further
tensor files, tokenizer files, the phrase table of ``[decode] replace_unk_table``, copied
into the directory as :data:`PHRASE_TABLE_FILE` so that the directory is whole wherever it
is moved) and, in ``fields_sha256``, of each of its own fields
(:mod:`seq2seq_kit.integrity`), so that a truncated file or an edited vocabulary, spec or
setting is caught before use. Weights are safetensors: loading parses a header and copies
arrays, it never unpickles or executes anything.

Saving is atomic and in place (:mod:`seq2seq_kit.atomic`): the new files are written and
synced in a hidden staging folder inside the directory, then moved over the old ones,
``model.json`` last. The directory itself is never renamed, so it may be a mount point or a
symlink's target (a symlink named as the directory is followed: the link stays, its target
is written). A crash at any point leaves either the old or the new checkpoint loadable.
Files in the directory that are not the checkpoint's are kept. One process writes a given
directory at a time: :func:`writer_lock` holds ``.seq2seq-kit-lock`` in it. A failed write
(disk full, no permission) is a :class:`CheckpointError` naming the path and leaves the
previous checkpoint as it was. Non-finite weights are never written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import CheckpointError, DataError, option
from .integrity import DIGESTS, changed_fields, file_sha256, manifest_of, read_manifest, seal
from .phrase_table import PhraseTable, read_phrase_table
from .run_record import check_meta
from .section import MAX_LENGTH
from .spec import Spec, spec_from_dict
from .vocab import Vocabulary
from .weights import check_weights

FORMAT = "seq2seq-kit"
#: 2: ``fields_sha256`` covers every field of ``model.json``.
FORMAT_VERSION = 2
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: Reads of a model directory: a save in another process (a training's) may replace its
#: files while they are read, which the read sees as a mismatch and retries.
READ_ATTEMPTS = 4
#: What a save writes (model.json and the tensor files training saves), besides tokenizer
#: files; anything else in a model directory is the user's and is kept.
OWN_FILES = frozenset(
    {MODEL_FILE, WEIGHTS_FILE, "last.safetensors", "optimizer.safetensors", "best.safetensors"}
)
#: The model directory's copy of the phrase table of ``[decode] replace_unk_table``, the
#: name its saved ``[decode]`` table records (``model.json``'s ``phrase_table`` lists it).
PHRASE_TABLE_FILE = "replace-unk-table.tsv"


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
    #: SHA-256 of ``weights.safetensors`` as loaded (None if not loaded); saves compute it
    weights_sha256: str | None = None
    #: the phrase table of ``[decode] replace_unk_table`` (None: none), read and checked;
    #: a save copies its file into the directory as :data:`PHRASE_TABLE_FILE`, checked
    #: against the SHA-256 it was read with
    phrase_table: PhraseTable | None = None


def non_finite(weights: dict[str, np.ndarray]) -> list[str]:
    """Names of the tensors holding a NaN or an infinity, sorted."""
    return sorted(name for name, w in weights.items() if not np.isfinite(w).all())


def check_output_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Path:
    """Check, before any work, that a model directory can be written at ``path``: it is
    absent, empty (but for a lock) or, with ``replace``, a model directory; and a save there
    works: a staging folder is made in it, a file written there is moved into the directory
    and removed, as a save does. Creates ``path`` and its missing parents.

    Raises:
        CheckpointError: naming ``path`` and what is wrong; an existing model directory
            without ``replace`` names the options to resume or overwrite it, as the
            interface running spells them (:func:`seq2seq_kit.errors.option`).
    """
    path = Path(path)
    refuse_kept_place(path)
    if _refuse_foreign(path) and not replace:
        raise CheckpointError(
            f"{path}: already holds a model; continue its training with "
            f"{option('resume', path)}, or replace it with {option('overwrite')} (config "
            f"train.overwrite = true)"
        )
    try:
        with atomic.stage(path) as staging:
            probe = staging / "probe"
            probe.write_bytes(b"")
            os.replace(probe, path / f"{atomic.PREFIX}probe")
            os.unlink(path / f"{atomic.PREFIX}probe")
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot write there ({exc.strerror or exc}: {exc.filename or path})"
        ) from None
    return path


#: The folder of a model directory where its run keeps checkpoints
#: (:mod:`seq2seq_kit.kept_checkpoints`), which that run alone writes and removes.
CHECKPOINTS_FOLDER = "checkpoints"


def refuse_kept_place(path: Path) -> None:
    """Refuse ``path`` inside a model directory's checkpoints folder: its run names,
    replaces and removes the folders there by its listing, so another command's output
    there would be overwritten or break that listing, ``--overwrite`` or not."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a loop: refused by the writes that follow
        return
    owner = resolved.parent.parent
    if resolved.parent.name == CHECKPOINTS_FOLDER and is_model_dir(owner):
        raise CheckpointError(
            f"{path}: inside {owner}/{CHECKPOINTS_FOLDER}, where the model directory "
            f"{owner} keeps the checkpoints its training writes and removes; write the "
            f"output somewhere else"
        )


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` holds a ``model.json`` of this format (readable, with the right
    ``format``; its other checks are :func:`load_checkpoint`'s)."""
    return manifest_of(path / MODEL_FILE, FORMAT) is not None


def _refuse_foreign(path: Path) -> bool:
    """Whether ``path`` holds a model; a file, a non-empty folder that is no model
    directory (a ``model.json`` of another program included), or one with a folder where a
    file of the save goes, is refused: never written into."""
    if not path.exists():
        return False
    if not path.is_dir() or (atomic.user_entries(path) and not (path / MODEL_FILE).exists()):
        raise CheckpointError(f"{path}: exists and is not a model directory; not overwriting it")
    holds_model = is_model_dir(path)
    if (path / MODEL_FILE).exists() and not holds_model:
        raise CheckpointError(
            f"{path / MODEL_FILE}: not a {FORMAT} model file (another program's, or damaged); "
            f"not overwriting the directory"
        )
    in_the_way = atomic.in_the_way_of(path, OWN_FILES)
    if in_the_way:
        raise CheckpointError(
            f"{in_the_way[0]}: a folder where a file of the model goes; move it away"
        )
    return holds_model


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of model directory ``path`` (created if missing; an OS file lock in it,
    released when the process ends, even by a kill) for as long as the block runs.

    Raises:
        CheckpointError: ``path`` is a file or a non-empty folder that is no model
            directory (nothing is written there), another process holds the lock, or the
            directory cannot be made, naming the directory.
    """
    path = Path(path)
    _refuse_foreign(path)
    try:
        with atomic.writer_lock(path):
            yield
    except atomic.Refused as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def save_checkpoint(
    ckpt: Checkpoint, path: str | os.PathLike[str], *, claimed: bool = False
) -> Path:
    """Write ``ckpt`` to directory ``path`` atomically, replacing an older checkpoint there.
    Other files in the directory are kept. ``claimed``: the caller checked the directory with
    :func:`check_output_dir` and holds its :func:`writer_lock`, so files that appeared in it
    since (a note, a log) are no reason to refuse.

    Raises:
        CheckpointError: ``path`` exists and is not a checkpoint directory (it is never
            overwritten), the weights do not match the spec or are not finite, the phrase
            table's file cannot be read or changed since it was read, or writing
            failed (disk full, no permission: names the path; the previous checkpoint
            stays as it was).
    """
    path = Path(path).resolve()  # a symlink's target is written, the link stays
    if not claimed:
        _refuse_foreign(path)
    try:
        check_weights(ckpt.spec, ckpt.weights)
        check_vocab_sizes(ckpt.spec, ckpt.source_vocab, ckpt.target_vocab)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    for name, tensors in {"weights": ckpt.weights, **ckpt.extra}.items():
        bad = non_finite(tensors)
        if bad:
            raise CheckpointError(f"{path}: not saving {name} with NaN or infinite values in {bad}")
    try:
        _write(ckpt, path)
    except atomic.Refused as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(
            f"{path}: writing the model directory failed ({exc.strerror or exc}); the previous "
            f"checkpoint there, if any, is unchanged"
        ) from None
    return path


def _write(ckpt: Checkpoint, path: Path) -> None:
    from safetensors import SafetensorError

    obsolete = _own_files(path)
    try:
        with atomic.stage(path) as staging:
            _fill(ckpt, staging)
            atomic.commit(path, staging, MODEL_FILE, obsolete)
    except SafetensorError as exc:  # safetensors reports I/O failures (ENOSPC) as its own
        raise OSError(str(exc)) from exc


def sealed_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``model.json`` of model directory ``path`` when it is ours and its field digests
    vouch for every field (nothing edited since the save); None otherwise. Its files are
    not read: a reader that uses them checks them (:func:`load_checkpoint`)."""
    doc = manifest_of(Path(path) / MODEL_FILE, FORMAT)
    try:
        return None if doc is None or changed_fields(doc, nested="meta") else doc
    except (KeyError, TypeError):
        return None


def remove_model_dir(path: str | os.PathLike[str]) -> bool:
    """Remove model directory ``path`` as far as a save wrote it: finish or drop a save that
    was cut short (:mod:`seq2seq_kit.atomic`), remove the checkpoint's own files
    (:func:`_own_files`), ``model.json`` last so that a removal cut short is finished by
    the next, then the directory if nothing is left in it. A file of someone else's keeps
    the directory, and it stays; a ``model.json`` of another program keeps all of it.
    Returns whether the directory is gone.

    Raises:
        OSError: a file of the save cannot be removed (no permission).
    """
    path = Path(path)
    if not path.is_dir():
        return not path.exists()
    if (path / MODEL_FILE).exists() and manifest_of(path / MODEL_FILE, FORMAT) is None:
        return False  # another program's model.json: nothing here is taken for ours
    atomic.finish(path)
    for stale in path.glob(f"{atomic.STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a save killed before its commit
    for name in sorted(_own_files(path) - {MODEL_FILE}) + [MODEL_FILE]:
        file = path / name
        if file.is_symlink() or file.is_file():
            file.unlink()
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def _own_files(path: Path) -> set[str]:
    """The files of the checkpoint now in ``path``, which a save may replace or remove: the
    fixed names, and those its ``model.json`` lists (tokenizer files ``source-*`` and
    ``target-*``, tensor files ``*.safetensors``, the phrase table) when its digests vouch
    for them."""
    names = set(OWN_FILES)
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        doc = sealed_manifest(path)
        if doc is None:
            return names
        names.update(n for n in doc["tokenizer_files"] if n.startswith(("source-", "target-")))
        if doc.get("phrase_table") is not None:
            names.add(doc["phrase_table"]["file"])
        listed = [info["file"] for info in doc["extra"].values()] + [doc["weights"]["file"]]
        names.update(n for n in listed if n.endswith(".safetensors"))
    return {name for name in names if atomic.plain_name(name)}


def _fill(ckpt: Checkpoint, staging: Path) -> None:
    """Write every file of ``ckpt`` into ``staging``, ``model.json`` last."""
    from safetensors.numpy import save_file

    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in ckpt.weights.items()}
    save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
    extra = {}
    for name, tensors in ckpt.extra.items():
        filename = f"{name}.safetensors"
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(staging / filename))
        extra[name] = {
            "file": filename,
            "sha256": file_sha256(staging / filename),
            # safetensors stores 0-d arrays as shape (1,): remember which were scalars
            "scalars": sorted(k for k, v in arrays.items() if v.ndim == 0),
        }
    tokenizer_files = {}
    for side, vocab in (("source", ckpt.source_vocab), ("target", ckpt.target_vocab)):
        for name in vocab.tokenizer.save(staging, f"{side}-"):
            tokenizer_files[name] = file_sha256(staging / name)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": ckpt.spec.to_dict(),
        "source_vocab": ckpt.source_vocab.to_dict(),
        "target_vocab": ckpt.target_vocab.to_dict(),
        "max_length": ckpt.max_length,
        "weights": {"file": WEIGHTS_FILE, "sha256": file_sha256(staging / WEIGHTS_FILE)},
        "extra": extra,
        "tokenizer_files": tokenizer_files,
        "meta": ckpt.meta,
    }
    if ckpt.phrase_table is not None:
        doc["phrase_table"] = {
            "file": PHRASE_TABLE_FILE,
            "sha256": _copy_phrase_table(ckpt.phrase_table, staging / PHRASE_TABLE_FILE),
        }
    (staging / MODEL_FILE).write_text(
        json.dumps(seal(doc, nested="meta"), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def _copy_phrase_table(table: PhraseTable, to: Path) -> str:
    """Copy the file ``table`` was read from to ``to``; returns its SHA-256.

    Raises:
        CheckpointError: the file cannot be read, or it changed since ``table`` was read
            (its SHA-256 differs): the directory would hold another table than the one
            checked.
    """
    try:
        shutil.copyfile(table.path, to)
        sha256 = file_sha256(to)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(
            f"{table.path}: the phrase table (decode.replace_unk_table) cannot be copied "
            f"into the model directory ({reason})"
        ) from None
    if sha256 != table.sha256:
        raise CheckpointError(
            f"{table.path}: the phrase table (decode.replace_unk_table) changed since it was "
            f"read and checked; not saving another table than the one checked (leave the "
            f"file as it is while the model is saved)"
        )
    return sha256


def load_checkpoint(
    path: str | os.PathLike[str], extra: bool = False, finite: bool = False
) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`; with ``extra``, also
    its further tensor files (for resuming training).

    Raises:
        CheckpointError: the directory or a file is missing, ``model.json`` is not valid
            JSON, comes from a newer format version, or a field of it changed since it was
            saved (naming the field); a vocabulary's size differs from the spec's; a file
            is truncated or altered (its SHA-256 differs) or the weights do not match the
            spec; with ``finite``, weights holding NaN or infinite values (a diverged run:
            nothing to decode with). Nothing is written but the end of a save that was
            interrupted after its commit (:func:`seq2seq_kit.atomic.finish`).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    for attempt in range(READ_ATTEMPTS):
        pending = atomic.finish(path)
        before = _identity(path / MODEL_FILE)
        try:
            return _load(path, extra, finite)
        except CheckpointError as exc:
            if attempt + 1 < READ_ATTEMPTS and (
                _identity(path / MODEL_FILE) != before or atomic.committed(path)
            ):
                time.sleep(0.05 * (attempt + 1))
                continue  # a save replaced files while they were read: read them again
            if pending:
                raise CheckpointError(
                    f"{exc}; a save into {path} was cut short after all its files were "
                    f"written and cannot be finished here (the directory is not writable): "
                    f"open it once with write access (e.g. seq2seq-kit info --model {path})"
                ) from None
            raise
    raise AssertionError("unreachable")


def _identity(file: Path) -> tuple[int, int] | None:
    """What tells whether ``file`` was replaced: its inode and modification time."""
    try:
        info = file.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _load(path: Path, extra: bool, finite: bool) -> Checkpoint:
    model_file = path / MODEL_FILE
    doc, version = read_manifest(
        model_file,
        FORMAT,
        FORMAT_VERSION,
        lambda reason: CheckpointError(f"{model_file}: {reason}"),
        missing=f"missing; is {path} a model directory?",
        kind="model file",
    )
    try:
        spec = spec_from_dict(doc["spec"])
        for name, sha in doc.get("tokenizer_files", {}).items():
            file, sha = _file_entry(path, {"file": name, "sha256": sha})
            _verify(file, sha, model_file)
        source_vocab, target_vocab = _vocabularies(doc, path, model_file)
        table = doc.get("phrase_table")
        table_entry = None if table is None else _file_entry(path, table)
        weights_file, expected_sha = _file_entry(path, doc["weights"])
        max_length = doc.get("max_length", 50)
        if type(max_length) is not int or not 1 <= max_length <= MAX_LENGTH:
            raise ValueError(f"max_length must be in [1, {MAX_LENGTH}], got {max_length!r:.20}")
        meta = check_meta(doc.get("meta", {}))
        extras = doc.get("extra", {}) if extra else {}
        entries = {name: (_file_entry(path, info), info) for name, info in extras.items()}
        changed = _changed_fields(doc, version)
        if not changed:
            check_vocab_sizes(spec, source_vocab, target_vocab)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{model_file}: malformed ({type(exc).__name__}: {exc})") from None
    if changed:
        raise CheckpointError(
            f"{model_file}: {', '.join(changed)} changed after the model was saved (SHA-256 "
            f"differs from {DIGESTS}); model.json is not for editing: restore the directory "
            f"from a copy, or retrain"
        )
    phrase_table = None if table_entry is None else _read_phrase_table(*table_entry, model_file)
    weights = _read_verified(weights_file, expected_sha, model_file)
    try:
        check_weights(spec, weights)
    except ValueError as exc:
        raise CheckpointError(f"{weights_file}: {exc}") from None
    tensors = {name: _extra_arrays(name, *entry, model_file) for name, entry in entries.items()}
    bad = non_finite(weights) if finite else []
    if bad:
        raise CheckpointError(
            f"{weights_file}: weights {bad} hold NaN or infinite values (training diverged); "
            f"retrain, e.g. with a smaller learning rate"
        )
    vocabs = source_vocab, target_vocab
    return Checkpoint(spec, *vocabs, weights, max_length, meta, tensors, expected_sha, phrase_table)


def _read_phrase_table(path: Path, sha256: str, model_file: Path) -> PhraseTable:
    """The model directory's phrase table at ``path``, checked against ``sha256``.

    Raises:
        CheckpointError: it is missing, altered or truncated, or breaks the phrase table
            format (:mod:`seq2seq_kit.phrase_table`: naming its line).
    """
    _verify(path, sha256, model_file)
    try:
        table = read_phrase_table(path)
    except DataError as exc:
        raise CheckpointError(f"the model's phrase table: {exc}") from None
    if table.sha256 != sha256:  # replaced between the two reads
        raise CheckpointError(f"{path}: corrupted or truncated (SHA-256 differs from {model_file})")
    return table


def _extra_arrays(
    name: str, entry: tuple[Path, str], info: dict[str, Any], model_file: Path
) -> dict[str, np.ndarray]:
    """The arrays of the extra file ``name`` (``entry``: its path and SHA-256), those that
    ``info`` lists as ``scalars`` reshaped to 0-d."""
    arrays = _read_verified(*entry, model_file)
    for key in info.get("scalars", []):
        if key not in arrays:
            raise CheckpointError(f"{model_file}: malformed (extra.{name}: no {key!r})")
        arrays[key] = arrays[key].reshape(())
    return arrays


def _changed_fields(doc: dict[str, Any], version: int) -> list[str]:
    """The fields of ``model.json`` that differ from its digests; format version 1 files
    (saved before fields were covered) have none to compare unless they carry digests.

    Raises:
        KeyError: a version 2 file without digests.
    """
    if version < 2 and DIGESTS not in doc:
        return []
    return changed_fields(doc, nested="meta")


def check_vocab_sizes(spec: Spec, source: Vocabulary, target: Vocabulary) -> None:
    """Raises ValueError: a vocabulary's size is not the spec's (ids would be misread)."""
    for side, vocab, size in (
        ("source", source, spec.src_vocab_size),
        ("target", target, spec.tgt_vocab_size),
    ):
        if len(vocab) != size:
            raise ValueError(
                f"the {side} vocabulary has {len(vocab)} tokens but the model's spec "
                f"{'src' if side == 'source' else 'tgt'}_vocab_size is {size}"
            )


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
    try:
        digest = file_sha256(path)
    except ValueError as exc:  # a FIFO or a device: reading it would block or never end
        raise CheckpointError(f"{path}: {exc}") from None
    if digest != sha256:
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
