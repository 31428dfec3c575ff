"""Training a model from the Python API or the CLI: :func:`train` checks and locks the output
directory, resumes a saved run, joins a data-parallel launch, prepares the data, builds the
model and runs the trainer, saving checkpoints as it goes."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace as replaced
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .backend import Backend
from .checkpoint import (
    Checkpoint,
    check_output_dir,
    load_checkpoint,
    save_checkpoint,
    writer_lock,
)
from .config import (
    Config,
    describe_errors,
    load_config,
    resolve_backend,
)
from .corpus import TrainingData, names_corpus, training_data
from .data import Pair, check_pairs
from .errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    DataError,
    OutOfMemory,
    allocating,
    option,
)
from .logs import stdout_logging
from .plugins import get_backend, registry
from .prepare import (
    make_tokenizers,
)
from .resume import MOVABLE, continue_run, resumed_config
from .run_record import RunRecord
from .runtime import (
    Launch,
    LaunchError,
    Runtime,
    launch_environment,
    machine_memory,
    resolve_threads,
)
from .spec import (
    OptimizerSpec,
    Spec,
    decoding_cap,
    model_sizes,
    spec_from_dict,
)
from .text_data import text_training_data
from .trainer import TrainerState, fit
from .translator import Translator, default_max_length
from .version import __version__
from .weights import weight_shapes

log = logging.getLogger(__name__)


def model_spec(cfg: Config, src_vocab_size: int, tgt_vocab_size: int) -> Spec:
    """The spec ``cfg.model`` describes (its architecture's: a
    :class:`~seq2seq_kit.spec.ModelSpec` for an RNN, a
    :class:`~seq2seq_kit.spec.TransformerSpec` for a Transformer) for vocabularies of these
    sizes.

    Raises:
        ConfigError: a value the spec refuses (e.g. ``share_embeddings`` with vocabularies
            of different sizes).
    """
    try:
        return spec_from_dict(
            {
                **cfg.model.model_dump(),
                "src_vocab_size": src_vocab_size,
                "tgt_vocab_size": tgt_vocab_size,
            }
        )
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


def optimizer_spec(cfg: Config) -> OptimizerSpec:
    """Adam, clipping and label smoothing as ``cfg.train`` sets them."""
    train = cfg.train
    return OptimizerSpec(
        learning_rate=train.learning_rate,
        beta1=train.adam_beta1,
        beta2=train.adam_beta2,
        epsilon=train.adam_epsilon,
        clip_norm=train.clip_norm,
        label_smoothing=train.label_smoothing,
    )


#: The ``[model]`` keys that decide how much memory a model takes, per architecture.
def check_model_fits(spec: Spec, copies: int) -> None:
    """Refuse, before anything is allocated, a model whose float32 weights, ``copies``
    times, exceed this machine's memory (:func:`~seq2seq_kit.runtime.machine_memory`):
    training holds at least three on the host, the weights and Adam's two moments, which
    every checkpoint saves, whatever device trains.

    Raises:
        OutOfMemory: naming the model's size settings (:func:`model_sizes`).
    """
    weights = sum(math.prod(shape) for shape in weight_shapes(spec).values())
    need, have = 4 * weights * copies, machine_memory()
    if have is not None and need > have:
        held = f" ({copies} float32 copies: weights and Adam's moments)" if copies > 1 else ""
        raise OutOfMemory(
            model_sizes(spec),
            f"{weights:,} weights need {need / 2**30:.1f} GiB{held} and this machine has "
            f"{have / 2**30:.1f} GiB",
        )


def train(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    data: str | Sequence[Pair] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool | None = None,
) -> Translator:
    """Train a model as ``config`` says (a :class:`Config`, a TOML path, or ``None`` for
    the seed notebook's defaults on ``digits``); keyword arguments override it. ``data`` is
    a dataset name, a TSV path, or a list of (source, target) pairs.

    ``config.model.architecture`` chooses the model (:func:`model_spec`); a Transformer's
    ``max_positions`` also skips the training and validation pairs it cannot hold (counted
    with those ``data.max_source_length`` / ``max_target_length`` skip) and caps the saved
    decoding length at ``max_positions - 1``.

    With ``out``, the model directory is written there after epochs (at most every
    ``train.save_seconds``), every ``train.save_every`` updates, and when training stops
    (``meta.trainer.stopped`` says why, ``meta.trainer.updates`` counts updates): the best weights
    by ``train.early_stopping_metric`` on the validation pairs (the last weights without
    validation) as ``weights.safetensors``, plus the last weights and the optimizer state
    for ``resume``. ``out`` is checked before any work (writable; not a file; an existing
    model directory only with ``overwrite``, which sets ``train.overwrite``) and locked
    against a second writer.

    ``resume`` continues the training saved in that directory (its config, data and
    vocabularies) and gives the same result as one uninterrupted run. Keys set in ``config``
    (its ``model_fields_set``: a file's keys, or flags) or by keyword must agree with the
    saved run, except those in :data:`seq2seq_kit.config.RESUMABLE` (epochs, patience, the
    learning rate and its plateau decay...), which are applied and recorded in the model's metadata
    (``meta["resumes"]``) and in the first resumed epoch's history record.

    Raises:
        DataError: no training pairs after the split and length filter, or resumed data
            that differ from the saved run's.
        ConfigError: a resumed run's conflicting key (naming it and both values), or no
            epochs left to train; a vocabulary with no piece but the specials, or one that
            maps most of the training pieces to ``<unk>`` (:func:`check_vocabulary`: naming
            the side, the tokenizer and the option, e.g. ``min_frequency``).
        CheckpointError: ``out`` cannot be written, holds another model (without
            ``overwrite=True`` or ``resume=``, which the message names) or is being written
            by another process.
        BackendError: the backend is missing, inference only (no ``train`` capability), or
            lacks a capability the run needs.
        TrainingError: a non-finite loss or weights (naming epoch and step).
        TrainingInterrupted: SIGINT or SIGTERM; the checkpoint was written first.
        OutOfMemory: the model's float32 weights, three times over (weights and Adam's
            moments), exceed this machine's memory (refused before the backend builds it),
            or the backend ran out of memory, naming the settings that decide the size:
            the model's for building it, ``train.batch_size`` and the length caps with
            them for training, ``data.tokenizer_options`` for training a tokenizer,
            ``data.options`` for a generated dataset.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    cfg = cfg.model_copy(deep=True)
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    # Assignments validate and count as set, like a flag.
    try:
        if isinstance(data, str):
            cfg.data.source = data
        if limit is not None:
            cfg.data.limit = limit
        if epochs is not None:
            cfg.train.epochs = epochs
        if seed is not None:
            cfg.train.seed = seed
        if overwrite is not None:
            cfg.train.overwrite = overwrite
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    pairs = None if data is None or isinstance(data, str) else check_pairs(data)

    saved = load_checkpoint(resume, extra=True) if resume is not None else None
    changes: dict[str, list[Any]] = {}
    if saved is not None:
        cfg, changes = resumed_config(saved, cfg, resume)
        backend = backend or saved.meta["backend"]
        out = resume if out is None else out
    backend_name = resolve_backend(backend, cfg)
    chosen = get_backend(backend_name)
    if "train" not in chosen.capabilities:
        raise BackendError(
            f"backend {backend_name!r} is inference only: it does not declare the 'train' "
            f"capability (it declares {sorted(chosen.capabilities)}); train with another "
            f"backend, then translate or serve the model with {option('backend', backend_name)}"
        )
    if saved is not None and "resume" not in chosen.capabilities:
        raise BackendError(
            f"backend {backend_name!r} does not declare the 'resume' capability: it cannot "
            f"continue a saved training; start a new run, or resume with another backend"
        )
    if saved is None and (pairs is not None or not names_corpus(cfg.data.source)):
        make_tokenizers(cfg)  # a bad option is refused before the output is locked
    launch = _launch(chosen, backend_name, cfg)
    if out is None or (launch is not None and launch.rank != 0):
        # rank 0 alone checks, locks and writes the model directory, and logs
        quiet = launch is not None and launch.rank != 0
        level, prefix = (logging.WARNING, f"rank {launch.rank}: ") if quiet else (logging.INFO, "")
        with stdout_logging(level, prefix):
            shown = None if out is None else Path(out)
            return _train(cfg, shown, chosen, backend_name, pairs, saved, changes, launch)
    # The real directory: a symlink or "." names the same place for the lock and the swap.
    try:
        out = Path(out).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise CheckpointError(f"{out}: cannot find the directory it names ({exc})") from None
    replace = cfg.train.overwrite or (saved is not None and out == Path(resume).resolve())
    with writer_lock(out), stdout_logging():
        check_output_dir(out, replace=replace)  # now that no one else can write it
        return _train(cfg, out, chosen, backend_name, pairs, saved, changes, launch)


def _launch(chosen: Backend, backend_name: str, cfg: Config) -> Launch | None:
    """The data-parallel launch this process is part of (None alone), once checked that
    the backend and the config can train that way.

    Raises:
        ConfigError: malformed launcher variables, or a config data-parallel training
            cannot follow.
        BackendError: the backend does not declare ``distributed``.
    """
    try:
        launch = launch_environment()
    except LaunchError as exc:
        raise ConfigError(str(exc)) from None
    if launch is None:
        return None
    started = (
        f"this process was started as rank {launch.rank} of {launch.world_size} by "
        f"{'torchrun' if launch.launcher == 'torchrun' else 'TF_CONFIG'}"
    )
    if "distributed" not in chosen.capabilities or chosen.join is None:
        able = sorted(
            b.name
            for b in registry().backends.values()
            if "distributed" in b.capabilities and b.join is not None
        )
        raise BackendError(
            f"{started}, but backend {backend_name!r} does not declare the 'distributed' "
            f"capability: it trains in one process only (installed backends that declare it: "
            f"{', '.join(able) or 'none'}); run it without the launcher"
        )
    if cfg.train.teacher_forcing < 1.0:
        raise ConfigError(
            f"{started}: train.teacher_forcing = {cfg.train.teacher_forcing} (scheduled "
            f"sampling) is not supported in data-parallel training; set it to 1.0 or train "
            f"in one process"
        )
    return launch


def _train(
    cfg: Config,
    out: Path | None,
    chosen: Backend,
    backend_name: str,
    pairs: tuple[Pair, ...] | None,
    saved: Checkpoint | None,
    changes: dict[str, list[Any]],
    launch: Launch | None = None,
) -> Translator:
    if pairs is None and names_corpus(cfg.data.source):
        saved_vocabs = None if saved is None else (saved.source_vocab, saved.target_vocab)
        data = training_data(cfg, saved_vocabs)
    else:
        data = text_training_data(cfg, pairs, saved)
    fingerprint = data.fingerprint
    if saved is not None and saved.meta.get("data_sha256", fingerprint) != fingerprint:
        moved = [
            f"{k} is {old!r} in the saved run but {new!r} now"
            for k, (old, new) in changes.items()
            if k in MOVABLE
        ]
        raise DataError(
            "; ".join(moved + ["the training or validation pairs differ from the saved run's"])
            + " (data given anew, or the file changed since?); a resumed run trains on the "
            f"pairs it started with: start a new run with {option('out', metavar='DIR')} to "
            "train on other data",
            data.where,
        )
    source_vocab, target_vocab = data.vocabs
    spec = model_spec(cfg, len(source_vocab), len(target_vocab))
    optimizer = optimizer_spec(cfg)
    local_processes = 1 if launch is None else launch.local_world_size
    runtime = Runtime(
        threads=resolve_threads(cfg.train.threads, local_processes),
        device=cfg.train.device,
        precision=cfg.train.precision,
    )
    group = None
    if launch is not None:
        assert chosen.join is not None  # checked by _launch
        group = chosen.join(launch, runtime)
        runtime = replaced(runtime, group=group)
    try:
        return _train_model(
            cfg,
            out,
            (chosen, backend_name, runtime),
            data,
            (spec, optimizer),
            saved,
            changes,
        )
    finally:
        if group is not None:
            group.close()


def _train_model(
    cfg: Config,
    out: Path | None,
    backend: tuple[Backend, str, Runtime],
    data: TrainingData,
    specs: tuple[Spec, OptimizerSpec],
    saved: Checkpoint | None,
    changes: dict[str, list[Any]],
) -> Translator:
    chosen, backend_name, runtime = backend
    spec, optimizer = specs
    source_vocab, target_vocab = data.vocabs
    train_ids, valid_ids = data.train, data.valid
    train_pairs, valid_pairs = data.train_pairs, data.valid_pairs
    fingerprint = data.fingerprint
    group = runtime.group
    rank, world_size = (0, 1) if group is None else (group.rank, group.world_size)
    check_model_fits(spec, 3)
    with allocating(model_sizes(spec)):
        model = chosen.create(spec, seed=cfg.train.seed, optimizer=optimizer, runtime=runtime)
    state = None
    resumes: list[dict[str, Any]] = []
    seconds = 0.0
    if saved is not None:
        resumed = continue_run(
            saved,
            model,
            cfg,
            changes,
            backend=backend_name,
            world_size=world_size,
            validating=bool(valid_pairs),
        )
        state, changes, resumes, seconds = (
            resumed.state,
            resumed.changes,
            resumed.resumes,
            resumed.seconds,
        )
        described = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        if changes:
            log.info("changed on resume: %s", described)

    record = RunRecord(
        seq2seq_kit_version=__version__,
        backend=backend_name,
        backend_version=chosen.version,
        data=data.name,
        data_sha256=fingerprint,
        others=dict(data.meta),
        train_pairs=len(train_pairs),
        valid_pairs=len(valid_pairs),
        skipped_too_long=data.skipped,
        config=cfg.model_dump(mode="json"),
        seconds=seconds,
        distributed=RunRecord.distributed_entry(
            "none" if group is None else group.launcher, world_size, cfg.train.batch_size
        ),
        resumes=resumes,
    )
    translator = Translator(
        model,
        source_vocab,
        target_vocab,
        backend=backend_name,
        max_length=decoding_cap(spec, default_max_length(train_ids[1])),
        meta=record.to_dict(),
    )
    translator.train_pairs, translator.valid_pairs = train_pairs, valid_pairs
    clock = time.perf_counter()

    def note(state: TrainerState) -> None:
        nonlocal clock
        now = time.perf_counter()
        record.seconds += now - clock
        clock = now
        record.history, record.trainer = state.history, state.to_json()
        translator.meta = record.to_dict()

    def save(state: TrainerState) -> None:
        note(state)
        ckpt = translator.checkpoint()
        if state.best_weights is not None:
            ckpt.weights = state.best_weights
        ckpt.extra = {"last": model.get_weights(), "optimizer": model.optimizer_state()}
        save_checkpoint(ckpt, out, claimed=True)

    first_epoch = 1 if state is None else state.epoch + 1
    hook = registry().manager.hook
    out_dir = None if out is None else str(out)

    def on_epoch_end(record: dict[str, Any]) -> None:
        if changes and record["epoch"] == first_epoch:
            record["resumed_with"] = changes
        hook.on_epoch_end(record=record, out_dir=out_dir)

    def on_update(record: dict[str, Any]) -> None:
        hook.on_update(record=record, out_dir=out_dir)

    def on_validation(record: dict[str, Any]) -> None:
        hook.on_validation(record=record, out_dir=out_dir)

    lead = rank == 0  # the other ranks of a data-parallel run train the same updates
    lengths = [
        f"data.{key} = {getattr(cfg.data, key)}"
        for key in ("max_source_length", "max_target_length")
        if getattr(cfg.data, key) is not None
    ]
    training_sizes = (
        f"train.batch_size = {cfg.train.batch_size} ({cfg.train.batch_type}), "
        f"train.accumulate = {cfg.train.accumulate}, "
        f"{', '.join(lengths) or 'data.max_source_length / data.max_target_length (unset)'} "
        f"or {model_sizes(spec)}"
    )
    with allocating(training_sizes):
        state = fit(
            model,
            train_ids,
            valid_ids if len(valid_ids[0]) else None,
            cfg.train,
            on_epoch_end=on_epoch_end if lead else None,
            state=state,
            save=None if out is None or not lead else save,
            out_dir=out_dir,
            on_update=on_update if lead else None,
            on_validation=on_validation if lead else None,
            group=group,
        )
    note(state)
    if lead:
        hook.on_train_end(history=state.history, out_dir=out_dir)
    translator.rank = rank
    return translator
