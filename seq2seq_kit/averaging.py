"""Checkpoint averaging: a model whose weights are the element-wise mean of several
checkpoints' (``seq2seq-kit average``), as fairseq's ``scripts/average_checkpoints.py``,
OpenNMT-py's ``onmt_average_models`` and Sockeye's ``average`` make one.

The checkpoints are those a run kept in its model directory (the ``last`` or ``best`` N
that ``meta.checkpoints`` lists, :mod:`seq2seq_kit.kept_checkpoints`) or model directories
named one by one. They must share the architecture (every key of the spec) and both
vocabularies (their tokenizers and pieces, in the same order): a weight means the same
thing in each only then. The mean of N float32 tensors is their sum in float64 divided by
N, rounded once to float32 (for two checkpoints, the float32 nearest to ``(a + b) / 2``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import (
    Checkpoint,
    check_output_dir,
    is_model_dir,
    load_checkpoint,
    refuse_kept_place,
    writer_lock,
)
from .errors import CheckpointError, ConfigError, option
from .kept_checkpoints import Entry, KeptCheckpoints, choose, entries_of
from .run_record import RunRecord
from .vocab import Vocabulary

#: The run record entries an average does not inherit from the checkpoint it takes its
#: record from: it is not resumed from (no optimizer state), keeps no checkpoints and is
#: none.
_NOT_INHERITED = ("trainer", "checkpoints", "checkpoint")


@dataclass(frozen=True)
class _Input:
    path: Path
    checkpoint: Checkpoint


def average(
    model: str | os.PathLike[str] | None = None,
    *,
    last: int | None = None,
    best: int | None = None,
    inputs: list[str | os.PathLike[str]] | None = None,
    out: str | os.PathLike[str],
    overwrite: bool = False,
) -> Path:
    """Write at ``out`` a model directory whose weights are the element-wise mean of those of
    N checkpoints: the ``last`` N (most updates) or the ``best`` N (lowest validation
    scores, ``train.early_stopping_metric``) that model directory ``model`` keeps
    (``train.keep_last``, ``keep_best``), or the model directories ``inputs``. Returns
    ``out``, resolved.

    The tensors are float32; each mean is the float64 sum of the N tensors divided by N,
    rounded to float32. The model takes the spec, vocabularies, decoding defaults and run
    record of the first checkpoint (the one with the most updates, or the best score, for
    ``last`` and ``best``; the first of ``inputs``), without its trainer state (an average
    is not resumed), and records in ``meta.averaged`` what it averaged: ``{"by": "last",
    "best" or "inputs", "model": the directory (or None), "checkpoints": [{"path",
    "weights_sha256"}, ...]}``, absolute paths. ``out`` is written as training writes a model
    directory (atomic, every file under its SHA-256); it must be new, empty, or (with
    ``overwrite``) a model directory that is none of the checkpoints' nor holds one.

    Raises:
        ConfigError: not exactly one of ``last``, ``best`` and ``inputs``; ``last`` or
            ``best`` without ``model``, or ``model`` beside ``inputs``; N < 1; N larger than
            the checkpoints ``model`` lists (naming how many it has); a checkpoint named
            twice; ``out`` that is ``model``, a checkpoint, or a folder holding one.
        CheckpointError: a checkpoint missing, damaged, or not the one listed (its weights
            changed since), naming it; checkpoints of different architectures or
            vocabularies, naming the key or the side and both checkpoints; ``out`` is a file,
            a folder of other files, a model directory without ``overwrite``, or is being
            written.
    """
    by, paths = _chosen(model, last, best, inputs)
    if not str(out).strip():
        raise ConfigError(f"{option('out', '')} is empty; name the directory to write")
    out_path = Path(out).resolve()
    _check_out(out_path, model, [path for path, _ in paths])
    refuse_kept_place(out_path)
    if out_path.exists() and is_model_dir(out_path) and not overwrite:
        raise CheckpointError(
            f"{out_path}: already holds a model; replace it with {option('overwrite')}, or "
            f"name another directory"
        )
    made = not out_path.exists()
    check_output_dir(out_path, replace=overwrite)  # before the work, as train --out
    try:
        averaged = _averaged(paths, by, None if model is None else Path(model).resolve())
    except BaseException:
        if made:  # the check created it: leave no empty directory behind a refusal
            with contextlib.suppress(OSError):
                out_path.rmdir()
        raise
    with writer_lock(out_path):
        # the model replaced at out drops the checkpoints it kept, as any save there does
        KeptCheckpoints(out_path, 0, 0, "loss").save(averaged)
    return out_path


def _chosen(
    model: str | os.PathLike[str] | None,
    last: int | None,
    best: int | None,
    inputs: list[str | os.PathLike[str]] | None,
) -> tuple[str, list[tuple[Path, str | None]]]:
    """How the checkpoints are chosen (``"last"``, ``"best"``, ``"inputs"``) and each one's
    directory with the SHA-256 its listing gives its weights (None for ``inputs``).

    Raises:
        ConfigError: as :func:`average` says.
    """
    given = [
        n for n, value in (("last", last), ("best", best), ("inputs", inputs)) if value is not None
    ]
    if len(given) != 1:
        shown = " and ".join(option(name, None) for name in given) or "none of them"
        raise ConfigError(
            f"average needs one of {option('last', metavar='N')}, {option('best', metavar='N')} "
            f"(with {option('model', metavar='DIR')}) or {option('inputs', metavar='DIR ...')}; "
            f"got {shown}"
        )
    if isinstance(inputs, (str, os.PathLike)):
        raise ConfigError(f"{option('inputs', None)} takes a list of model directories")
    if inputs is not None and not inputs:
        raise ConfigError(f"{option('inputs', None)}: no model directory named")
    if inputs is not None:
        return "inputs", _named(model, inputs)
    by = given[0]
    count = last if by == "last" else best
    return by, _picked(model, by, count)


def _named(
    model: str | os.PathLike[str] | None, inputs: list[str | os.PathLike[str]]
) -> list[tuple[Path, str | None]]:
    """The model directories ``inputs`` names, resolved, each without a listed SHA-256.

    Raises:
        ConfigError: ``model`` given beside them, or a directory named twice.
    """
    if model is not None:
        raise ConfigError(
            f"{option('inputs', metavar='DIR ...')} names the checkpoints itself; leave "
            f"out {option('model', model)}"
        )
    paths = [Path(path).resolve() for path in inputs]
    for number, path in enumerate(paths):
        if path in paths[:number]:
            raise ConfigError(
                f"{path}: named twice in {option('inputs', None)}; each checkpoint counts "
                f"once in the mean"
            )
    return [(path, None) for path in paths]


def _picked(
    model: str | os.PathLike[str] | None, by: str, count: int | None
) -> list[tuple[Path, str | None]]:
    """The ``count`` checkpoints ``model`` lists that ``by`` (``"last"`` or ``"best"``)
    chooses, first the most recent or the best, each with its listed SHA-256.

    Raises:
        ConfigError: ``count`` not an int >= 1, no ``model``, or ``model`` listing fewer
            checkpoints than ``count``.
    """
    if type(count) is not int or count < 1:
        raise ConfigError(f"{option(by, count)}: the number of checkpoints must be >= 1")
    if model is None:
        raise ConfigError(
            f"{option(by, count)} chooses among the checkpoints a model directory keeps: "
            f"name it with {option('model', metavar='DIR')}"
        )
    entries = _listed(Path(model))
    _check_enough(entries, model, by, count)
    if by == "last":
        picked = choose(entries, count, 0)[::-1]  # the most recent first
    else:
        picked = sorted(choose(entries, 0, count), key=lambda e: (e.score, e.update))
    base = Path(model).resolve()
    return [(base / e.path, e.weights_sha256) for e in picked]


def _check_enough(entries: list[Entry], model: str | os.PathLike[str], by: str, count: int) -> None:
    """Raises ConfigError: ``model`` lists no checkpoints, or fewer than ``count``, saying
    how a run keeps more."""
    if not entries:
        raise ConfigError(
            f"{option(by, count)}: {model} keeps no checkpoints (a run keeps them with "
            f"{option('train.keep_last', None)} or {option('train.keep_best', None)}; an "
            f"average or an imported model has none); name model directories to average "
            f"with {option('inputs', metavar='DIR')}"
        )
    if count > len(entries):
        held = ", ".join(str(e.update) for e in entries) or "none"
        raise ConfigError(
            f"{option(by, count)}: {model} keeps {len(entries)} checkpoint"
            f"{'s' if len(entries) != 1 else ''} (updates: {held}); ask for at most "
            f"{len(entries)}, or train with {option('train.keep_last', None)} or "
            f"{option('train.keep_best', None)} to keep more"
        )


def _listed(model: Path) -> list[Entry]:
    """The checkpoints ``model`` lists, after checking the directory (a model of ours,
    undamaged) and the listing.

    Raises:
        CheckpointError: naming the directory and what is wrong.
    """
    record = RunRecord.from_dict(load_checkpoint(model).meta)
    try:
        entries = entries_of(record.checkpoints, str(model / "model.json"))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    metrics = sorted({e.metric for e in entries})
    if len(metrics) > 1:
        raise CheckpointError(
            f"{model / 'model.json'}: its checkpoints were scored by different metrics "
            f"({', '.join(metrics)}); name them with {option('inputs', metavar='DIR ...')}"
        )
    return entries


def _check_out(out: Path, model: str | os.PathLike[str] | None, paths: list[Path]) -> None:
    """Raises ConfigError: ``out`` is the model directory, a checkpoint averaged, or a
    folder holding one: writing it would replace what is read."""
    sources = ([Path(model).resolve()] if model is not None else []) + paths
    for source in sources:
        if out == source or out in source.parents:
            raise ConfigError(
                f"{option('out', out)} is, or holds, {source}, which the average reads; "
                f"write it to another directory"
            )


def _check_compatible(first: _Input, other: _Input) -> None:
    """Raises CheckpointError: ``other`` has another vocabulary (naming the side and what
    differs) or another architecture (naming the spec key and both values) than ``first``;
    the vocabularies first, since their sizes are keys of the spec too."""
    for side in ("source", "target"):
        difference = _vocabulary_difference(
            getattr(first.checkpoint, f"{side}_vocab"), getattr(other.checkpoint, f"{side}_vocab")
        )
        if difference:
            raise CheckpointError(
                f"{other.path}: another {side} vocabulary than {first.path} ({difference}); "
                f"only checkpoints of one model average"
            )
    a, b = first.checkpoint.spec.to_dict(), other.checkpoint.spec.to_dict()
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key):
            raise CheckpointError(
                f"{other.path}: another architecture than {first.path} (spec {key} is "
                f"{b.get(key)!r} there, {a.get(key)!r} in the first); only checkpoints of one "
                f"model average"
            )


def _vocabulary_difference(a: Vocabulary, b: Vocabulary) -> str | None:
    """What differs between vocabularies ``a`` (the first checkpoint's) and ``b``, in a
    few words; None when they are the same."""
    da, db = a.to_dict(), b.to_dict()
    if da == db:
        return None
    if a.tokenizer.name != b.tokenizer.name:
        return f"tokenizer {b.tokenizer.name!r} there, {a.tokenizer.name!r} in the first"
    if len(a) != len(b):
        return f"{len(b)} pieces there, {len(a)} in the first"
    for i in range(len(a)):
        if a.token(i) != b.token(i):
            return f"id {i} is {b.token(i)!r} there, {a.token(i)!r} in the first"
    keys = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    return f"{', '.join(keys)} differ"


def _read(path: Path, listed_sha256: str | None, model: Path | None) -> _Input:
    """The checkpoint at ``path``, checked to be the one its model directory ``model``
    listed (its weights' SHA-256 ``listed_sha256``), when it was chosen from a listing.

    Raises:
        CheckpointError: missing, damaged, holding non-finite weights, or changed since.
    """
    ckpt = load_checkpoint(path, finite=True)
    if listed_sha256 is not None and ckpt.weights_sha256 != listed_sha256:
        raise CheckpointError(
            f"{path}: its weights changed since {model} listed it (SHA-256 differs from its "
            f"meta.checkpoints); average the checkpoints as they are with "
            f"{option('inputs', metavar='DIR ...')}"
        )
    return _Input(path, ckpt)


def _averaged(paths: list[tuple[Path, str | None]], by: str, model: Path | None) -> Checkpoint:
    """The checkpoint of the mean weights of the checkpoints at ``paths`` (each with the
    SHA-256 its listing gives it), with the first one's spec, vocabularies, decoding cap
    and run record (less what an average does not inherit). The checkpoints are read one
    at a time: memory holds the float64 sums and one checkpoint.

    Raises:
        CheckpointError: as :func:`average` says.
    """
    first = _read(*paths[0], model)
    totals = {k: v.astype(np.float64) for k, v in first.checkpoint.weights.items()}
    digests = [first.checkpoint.weights_sha256]
    for path, listed_sha256 in paths[1:]:
        other = _read(path, listed_sha256, model)
        _check_compatible(first, other)
        for name, tensor in other.checkpoint.weights.items():
            totals[name] += tensor
        digests.append(other.checkpoint.weights_sha256)
        del other  # one checkpoint at a time
    weights = {name: (total / len(paths)).astype(np.float32) for name, total in totals.items()}
    ckpt = first.checkpoint
    meta = {k: v for k, v in ckpt.meta.items() if k not in _NOT_INHERITED}
    meta["averaged"] = {
        "by": by,
        "model": None if model is None else str(model),
        "checkpoints": [
            {"path": str(path), "weights_sha256": sha}
            for (path, _), sha in zip(paths, digests, strict=True)
        ],
    }
    return Checkpoint(
        ckpt.spec,
        ckpt.source_vocab,
        ckpt.target_vocab,
        weights,
        ckpt.max_length,
        meta,
        phrase_table=ckpt.phrase_table,
    )
