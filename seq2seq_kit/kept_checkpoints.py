"""The checkpoints a model directory keeps beside its model (``train.keep_last``,
``train.keep_best``): where each goes, which stay, and saving them so that a crash never
loses the directory's model nor leaves a checkpoint nobody lists.

Each is a model directory of its own (:mod:`seq2seq_kit.checkpoint`) at
``DIR/checkpoints/update-NNNNNNNN/``, named by the updates done at its validation (eight
digits, more past 99,999,999, so that a listing sorts by update), and listed in the
``meta.checkpoints`` of ``DIR/model.json``, oldest first (:class:`Entry`). That listing is
what the directory keeps: a checkpoint is the directory's when it is listed there with the
SHA-256 of its weights.

A save that adds or drops checkpoints (:meth:`KeptCheckpoints.save`) first writes the folders
it adds or drops to a journal, ``DIR/.seq2seq-kit-checkpoints.json`` (a hidden name of
:mod:`seq2seq_kit.atomic`'s, ignored wherever a directory is checked for other files), then
writes the new checkpoint, then saves the directory's model with the new listing, then
removes the checkpoints it dropped, and last the journal. Whoever saves into the directory
next finishes a save that was cut short (:func:`recover`): of the folders the journal names,
those the listing does not hold are removed, only as far as a save wrote them
(:func:`seq2seq_kit.checkpoint.remove_model_dir`). So a crash before the model's save leaves
the previous model and listing, the new checkpoint is removed; after it, the new listing,
and the dropped ones are removed. The directory's model is saved before its first
checkpoint, so a directory holding checkpoints always holds a model too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import atomic
from .checkpoint import (
    CHECKPOINTS_FOLDER,
    Checkpoint,
    is_model_dir,
    remove_model_dir,
    save_checkpoint,
    sealed_manifest,
)
from .errors import CheckpointError, option
from .run_record import RunRecord

#: The folder of a model directory holding its kept checkpoints.
FOLDER = CHECKPOINTS_FOLDER
#: The journal of a save that adds or drops checkpoints (see the module's docstring).
JOURNAL = f"{atomic.PREFIX}checkpoints.json"
_NAME = re.compile(rf"{FOLDER}/update-(\d{{8,}})")


def checkpoint_path(update: int) -> str:
    """Where the checkpoint of the validation after ``update`` updates goes, relative to
    the model directory: ``checkpoints/update-00001234``."""
    return f"{FOLDER}/update-{update:08d}"


@dataclass(frozen=True)
class Entry:
    """One kept checkpoint, as ``meta.checkpoints`` of ``model.json`` lists it.

    Attributes:
        update: updates done at its validation.
        epoch: the epoch of the validation, counted from 1 (at an epoch end, the epoch
            ending); step: that epoch's batches trained on by then.
        metric: ``train.early_stopping_metric``, what ``score`` measures.
        score: the validation's score, lower is better (the loss; minus a figure where
            higher is better, such as the accuracy): the trainer's best score's measure,
            on the training pairs for a run without validation pairs.
        path: its folder relative to the model directory (:func:`checkpoint_path`).
        weights_sha256: SHA-256 of its ``weights.safetensors``; None before it is written.
    """

    update: int
    epoch: int
    step: int
    metric: str
    score: float
    path: str
    weights_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "update": self.update,
            "epoch": self.epoch,
            "step": self.step,
            "metric": self.metric,
            "score": self.score,
            "path": self.path,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Entry:
        """The entry :meth:`to_dict` wrote.

        Raises:
            ValueError: naming the field that is missing or wrong (a path other than
                :func:`checkpoint_path` of its update among them: nothing outside the
                directory's ``checkpoints`` folder is ever taken for a checkpoint).
        """
        if not isinstance(data, dict):
            raise ValueError(f"an entry must be an object, got {type(data).__name__}")
        for key, kind in (
            ("update", int),
            ("epoch", int),
            ("step", int),
            ("metric", str),
            ("score", float),
            ("path", str),
            ("weights_sha256", str),
        ):
            value = data.get(key)
            if kind is float:
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise ValueError(f"{key} is {value!r:.60}, not a finite number")
            elif type(value) is not kind or (kind is int and value < 0):
                wanted = "an integer >= 0" if kind is int else "a string"
                raise ValueError(f"{key} is {value!r:.60}, not {wanted}")
        if data["path"] != checkpoint_path(data["update"]):
            raise ValueError(
                f"path is {data['path']!r:.80}, not {checkpoint_path(data['update'])!r}"
            )
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def entries_of(listing: Any, where: str) -> list[Entry]:
    """The entries of a ``meta.checkpoints`` list, by update.

    Raises:
        ValueError: ``where``, the entry's number and what is wrong with it.
    """
    if listing is None:
        return []
    if not isinstance(listing, list):
        raise ValueError(f"{where}: meta.checkpoints must be a list, got {type(listing).__name__}")
    entries = []
    for number, data in enumerate(listing):
        try:
            entries.append(Entry.from_dict(data))
        except ValueError as exc:
            raise ValueError(f"{where}: meta.checkpoints[{number}]: {exc}") from None
    return sorted(entries, key=lambda e: e.update)


def choose(entries: Sequence[Entry], keep_last: int, keep_best: int) -> list[Entry]:
    """The entries a directory keeps, by update: the ``keep_last`` of the most updates and
    the ``keep_best`` of the lowest scores (of equal scores the earlier, as the trainer's
    best weights are the first to reach a score), both together when both are set."""
    by_update = sorted(entries, key=lambda e: e.update)
    last = by_update[max(len(by_update) - keep_last, 0) :] if keep_last else []
    best = sorted(by_update, key=lambda e: (e.score, e.update))[:keep_best]
    chosen = {e.update for e in (*last, *best)}
    return [e for e in by_update if e.update in chosen]


def listed(path: str | os.PathLike[str]) -> list[Entry]:
    """The checkpoints model directory ``path`` lists and holds: entries of its sealed
    ``model.json`` (:func:`seq2seq_kit.checkpoint.sealed_manifest`) whose folder holds a
    model with the listed weights; malformed entries, and a directory that is no model of
    ours, give none (a reader that must know why uses :func:`entries_of`)."""
    path = Path(path)
    doc = sealed_manifest(path)
    if doc is None:
        return []
    try:
        entries = entries_of(doc["meta"].get("checkpoints"), str(path))
    except (ValueError, AttributeError):
        return []
    return [e for e in entries if _weights_sha256(path / e.path) == e.weights_sha256]


def _weights_sha256(path: Path) -> str | None:
    """The SHA-256 the sealed ``model.json`` of ``path`` gives its weights, or None."""
    doc = sealed_manifest(path)
    with contextlib.suppress(KeyError, TypeError):
        if doc is not None and isinstance(doc["weights"]["sha256"], str):
            return doc["weights"]["sha256"]
    return None


def recover(path: str | os.PathLike[str]) -> None:
    """Finish a save into model directory ``path`` that was cut short between its journal
    and the journal's removal (see the module's docstring); nothing when there is none.

    Raises:
        OSError: a file cannot be removed.
    """
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        (path / f"{JOURNAL}.tmp").unlink()  # a journal cut short: its save wrote nothing yet
    journal = path / JOURNAL
    if not journal.is_file():
        return
    try:
        names = json.loads(journal.read_text(encoding="utf-8"))["folders"]
    except (OSError, ValueError, KeyError, TypeError):
        names = []  # not written by a save (those are replaced whole): nothing is taken
    holds = {e.path for e in listed(path)}
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str) and _NAME.fullmatch(name) and name not in holds:
            remove_model_dir(path / name)
    _remove_empty(path / FOLDER)
    journal.unlink()
    atomic.fsync(path)


def _write_journal(path: Path, folders: list[str]) -> None:
    temporary = path / f"{JOURNAL}.tmp"
    temporary.write_text(json.dumps({"folders": folders}) + "\n", encoding="utf-8")
    atomic.fsync(temporary)
    os.replace(temporary, path / JOURNAL)
    atomic.fsync(path)


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or holding someone's files: left as it is
        folder.rmdir()


class KeptCheckpoints:
    """The checkpoints one training run keeps in its model directory ``path``, which it
    holds the writer lock of (:func:`seq2seq_kit.checkpoint.writer_lock`).

    ``carried_until``: a resumed run's updates at its start, and ``resumed_sha256`` the
    SHA-256 of the weights it resumed from. When the directory holds that model (the run
    resumed in place, or into a copy of its directory), the run keeps the checkpoints it
    lists from validations up to there and drops the later ones (left by the run it
    replaces). Otherwise, and for a new run (None), it keeps none of those the directory
    lists (a model it replaces, ``train.overwrite``: another run's): their folders are
    removed at its first save.
    """

    def __init__(
        self,
        path: Path,
        keep_last: int,
        keep_best: int,
        metric: str,
        carried_until: int | None = None,
        resumed_sha256: str | None = None,
    ):
        self.path, self.keep_last, self.keep_best, self.metric = path, keep_last, keep_best, metric
        recover(path)
        self.listed = listed(path)  # what the directory's model.json lists now
        ours = resumed_sha256 is not None and _weights_sha256(path) == resumed_sha256
        until = carried_until if carried_until is not None and ours else -1
        self.kept = [e for e in self.listed if e.update <= until]

    def listing(self) -> list[dict[str, Any]]:
        """The ``meta.checkpoints`` of the checkpoints kept so far."""
        return [e.to_dict() for e in self.kept]

    def save(
        self,
        model: Checkpoint,
        validation: tuple[int, int, int, float] | None = None,
        snapshot: Callable[[], Checkpoint] | None = None,
    ) -> list[dict[str, Any]]:
        """Save the directory's ``model``, its ``meta.checkpoints`` the kept ones, keeping a
        checkpoint of ``validation`` (``(update, epoch, step, score)``, the model at that
        validation given by ``snapshot()``, called only if kept) when it is among the
        ``keep_last`` most recent or the ``keep_best`` best, and not kept yet; those no
        longer among them are removed. Returns the new listing.

        Raises:
            CheckpointError: writing or removing failed (naming the path); the directory's
                model and listing are the old ones or the new ones, whole, and the next
                save finishes the change (removes what no listing holds).
        """
        try:
            return self._save(model, validation, snapshot)
        except OSError as exc:  # the journal's or a removal's; a save reports its own
            raise CheckpointError(
                f"{exc.filename or self.path}: updating the kept checkpoints failed "
                f"({exc.strerror or exc}); the model directory is whole, and its next save "
                f"finishes the change"
            ) from None

    def _save(
        self,
        model: Checkpoint,
        validation: tuple[int, int, int, float] | None,
        snapshot: Callable[[], Checkpoint] | None,
    ) -> list[dict[str, Any]]:
        recover(self.path)
        entries = list(self.kept)
        new = None
        if validation is not None and all(e.update != validation[0] for e in entries):
            update, epoch, step, score = validation
            new = Entry(update, epoch, step, self.metric, score, checkpoint_path(update))
            entries.append(new)
        keep = choose(entries, self.keep_last, self.keep_best)
        adding = new if new in keep else None
        dropping = sorted({e.path for e in self.listed} - {e.path for e in keep})
        if adding is None and not dropping:
            save_checkpoint(_listing(model, keep), self.path, claimed=True)
            self.kept = self.listed = keep
            return self.listing()
        if adding is not None and adding.path not in {e.path for e in self.listed}:
            self._refuse_in_the_way(adding)
        if adding is not None and not is_model_dir(self.path):
            # the model before its first checkpoint: never a directory of checkpoints alone
            before = [e for e in keep if e is not adding]
            save_checkpoint(_listing(model, before), self.path, claimed=True)
        _write_journal(self.path, ([adding.path] if adding is not None else []) + dropping)
        if adding is not None:
            assert snapshot is not None, "a validation to keep comes with its model"
            keep = [self._write(adding, snapshot()) if e is adding else e for e in keep]
        save_checkpoint(_listing(model, keep), self.path, claimed=True)
        self.kept = self.listed = keep
        for folder in dropping:
            remove_model_dir(self.path / folder)
        _remove_empty(self.path / FOLDER)
        (self.path / JOURNAL).unlink()
        return self.listing()

    def _refuse_in_the_way(self, entry: Entry) -> None:
        """Refuse to write the checkpoint of ``entry`` over a folder the listing does not
        hold: recover() removed any that a cut-short save of ours left, so it is not ours.

        Raises:
            CheckpointError: naming the folder, before anything is written.
        """
        if (self.path / entry.path).exists() or (self.path / entry.path).is_symlink():
            raise CheckpointError(
                f"{self.path / entry.path}: the checkpoint of update {entry.update} goes "
                f"there, and something this run did not write is in the way; move it and "
                f"resume with {option('resume', self.path)}"
            )

    def _write(self, entry: Entry, ckpt: Checkpoint) -> Entry:
        """Write ``ckpt`` as the checkpoint of ``entry``; returns the entry with the SHA-256
        of its weights."""
        record = RunRecord.from_dict(ckpt.meta)
        record.checkpoints = None
        record.checkpoint = {k: v for k, v in entry.to_dict().items() if k not in _LISTING_ONLY}
        ckpt = replace(ckpt, meta=record.to_dict())
        folder = save_checkpoint(ckpt, self.path / entry.path)
        return replace(entry, weights_sha256=_weights_sha256(folder))


#: What a listing says of a checkpoint that the checkpoint's own ``meta.checkpoint`` does not.
_LISTING_ONLY = ("path", "weights_sha256")


def _listing(model: Checkpoint, entries: list[Entry]) -> Checkpoint:
    """``model`` with ``entries`` as its ``meta.checkpoints`` (none: no such key)."""
    record = RunRecord.from_dict(model.meta)
    record.checkpoints = [e.to_dict() for e in entries] or None
    return replace(model, meta=record.to_dict())
