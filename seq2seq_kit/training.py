"""Training a model from the Python API or the CLI: :func:`train` checks and locks the output
directory, resumes a saved run, joins a data-parallel launch, prepares the data, builds the
model and runs the trainer, saving checkpoints, with the run's record
(:class:`~seq2seq_kit.run_record.RunRecord`), as it goes."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .backend import Backend, Model
from .checkpoint import (
    PHRASE_TABLE_FILE,
    Checkpoint,
    check_output_dir,
    load_checkpoint,
    writer_lock,
)
from .config import Config, describe_errors, load_config, resolve_backend
from .corpus import TrainingData, names_corpus, training_data
from .data import Pair, check_pairs
from .decoded_validation import DecodedValidation, decoded_validation
from .engine import Engine, check_trainable, engine, join_launch
from .errors import CheckpointError, ConfigError, allocating, option
from .finetune import FineTune, check_not_resumed, fine_tuning
from .kept_checkpoints import KeptCheckpoints
from .logs import stdout_logging
from .model_setup import check_model_fits, model_spec, optimizer_spec
from .phrase_table import PhraseTable, read_phrase_table
from .plugins import get_backend, registry
from .prepare import make_tokenizers
from .resume import Continuation, check_same_data, continue_run, resumed_config
from .run_record import RunRecord
from .run_saves import RunSaves
from .runtime import Launch
from .source_examples import run_examples
from .spec import OptimizerSpec, Spec, decoding_cap, model_sizes
from .text_data import text_training_data
from .trainer import TrainerState, fit
from .translator import Translator, default_max_length
from .version import __version__

log = logging.getLogger(__name__)


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
    init_from: str | os.PathLike[str] | None = None,
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
    for ``resume``; with ``train.keep_last`` or ``keep_best``, the checkpoints of the last or
    best validations beside it (:mod:`seq2seq_kit.kept_checkpoints`), each a model directory
    that a run resumes from into another ``out``. ``out`` is checked before any work
    (writable; not a file; an existing model directory only with ``overwrite``, which sets
    ``train.overwrite``) and locked against a second writer.

    ``resume`` continues the training saved in that directory (its config, data and
    vocabularies) and gives the same result as one uninterrupted run. Keys set in ``config``
    (its ``model_fields_set``: a file's keys, or flags) or by keyword must agree with the
    saved run, except those in :data:`seq2seq_kit.config.RESUMABLE` (epochs, patience, the
    learning rate and its plateau decay...), which are applied and recorded in the model's metadata
    (``meta["resumes"]``) and in the first resumed epoch's history record.

    ``init_from`` (or ``config.train.init_from``) fine-tunes a model directory
    (:mod:`seq2seq_kit.finetune`): a new run from its weights, with a fresh optimizer,
    recorded as ``meta["init_from"]``.

    ``config.decode.replace_unk_table``'s phrase table is read and checked before anything
    is trained, and every save copies it into the model directory
    (:data:`seq2seq_kit.checkpoint.PHRASE_TABLE_FILE`, the name the saved ``[decode]``
    table records), so that the directory works wherever it is moved; a resumed run keeps
    the saved copy unless given another table.

    Raises:
        DataError: no training pairs after the split and length filter, or resumed data
            that differ from the saved run's; a piece a fine-tuned model's vocabulary lacks
            (with ``decode.unknown = "error"``); a ``decode.replace_unk_table`` that cannot
            be read or breaks the phrase table format (before anything is trained).
        ConfigError: a resumed run's conflicting key (naming it and both values), or no
            epochs left to train; a kept checkpoint resumed in place (its ``out``);
            ``train.keep_best`` without validation pairs; a fine-tuned run's key set
            against its model, its model as ``out``, or ``init_from`` beside ``resume``; a
            vocabulary with no piece but
            the specials, or one that maps most of the training pieces to ``<unk>``
            (:func:`check_vocabulary`: naming the side, the tokenizer and the option, e.g.
            ``min_frequency``).
        CheckpointError: the ``init_from`` model is missing or damaged; ``out`` cannot be
            written, holds another model (without ``overwrite=True`` or ``resume=``, which
            the message names) or is being written by another process.
        BackendError: the backend is missing, inference only (no ``train`` capability), or
            lacks a capability the run needs (``beam`` for ``train.valid_beam`` > 1).
        TrainingError: a non-finite loss or weights (naming epoch and step).
        TrainingInterrupted: SIGINT or SIGTERM; the checkpoint was written first.
        OutOfMemory: the model's float32 weights, three times over (weights and Adam's
            moments), exceed this machine's memory (refused before the backend builds it),
            or the backend ran out of memory, naming the settings that decide the size:
            the model's for building it, ``train.batch_size`` and the length caps with
            them for training, ``data.tokenizer_options`` for training a tokenizer,
            ``data.options`` for a generated dataset.
    """
    cfg, pairs = _configured(
        config,
        data,
        limit=limit,
        epochs=epochs,
        seed=seed,
        overwrite=overwrite,
        init_from=init_from,
    )
    saved = load_checkpoint(resume, extra=True) if resume is not None else None
    changes: dict[str, list[Any]] = {}
    source = None
    if saved is not None:
        cfg = check_not_resumed(cfg, saved, resume)
        cfg, changes = resumed_config(saved, cfg, resume)
        backend = backend or RunRecord.from_dict(saved.meta).backend
        out = resume if out is None else out
        _check_not_a_kept_checkpoint(saved, resume, out)
    elif cfg.train.init_from is not None:
        cfg, source = fine_tuning(cfg, out, pairs is None and names_corpus(cfg.data.source))
    backend_name = resolve_backend(backend, cfg)
    chosen = get_backend(backend_name)
    check_trainable(chosen, backend_name, resuming=saved is not None)
    table = _phrase_table(cfg, saved)  # a bad table is refused before anything is trained
    if table is not None:
        cfg.decode.replace_unk_table = PHRASE_TABLE_FILE  # the model directory's copy
    fresh = saved is None and source is None  # the run trains its own tokenizers
    if fresh and (pairs is not None or not names_corpus(cfg.data.source)):
        make_tokenizers(cfg)  # a bad option is refused before the output is locked
    launch = join_launch(chosen, backend_name, cfg)
    if out is None or (launch is not None and launch.rank != 0):
        # rank 0 alone checks, locks and writes the model directory, and logs
        quiet = launch is not None and launch.rank != 0
        level, prefix = (logging.WARNING, f"rank {launch.rank}: ") if quiet else (logging.INFO, "")
        with stdout_logging(level, prefix):
            shown = None if out is None else Path(out)
            return _train(
                cfg, shown, chosen, backend_name, pairs, saved, changes, launch, source, table
            )
    # The real directory: a symlink or "." names the same place for the lock and the swap.
    try:
        out = Path(out).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise CheckpointError(f"{out}: cannot find the directory it names ({exc})") from None
    replace = cfg.train.overwrite or (saved is not None and out == Path(resume).resolve())
    with writer_lock(out), stdout_logging():
        check_output_dir(out, replace=replace)  # now that no one else can write it
        return _train(cfg, out, chosen, backend_name, pairs, saved, changes, launch, source, table)


def _phrase_table(cfg: Config, saved: Checkpoint | None) -> PhraseTable | None:
    """The phrase table of ``cfg.decode.replace_unk_table``, read and checked: the saved
    run's copy when a resumed run keeps the saved setting, else the file it names (a config
    file's path is relative to the file's folder, :func:`seq2seq_kit.config.load_config`;
    one set in Python, to the working directory). Saves copy it into the model directory.

    Raises:
        DataError: the file cannot be read or breaks the phrase table format, naming the
            file and line.
    """
    name = cfg.decode.replace_unk_table
    if name is None:
        return None
    if saved is not None and saved.phrase_table is not None and name == PHRASE_TABLE_FILE:
        return saved.phrase_table
    return read_phrase_table(name)


def _check_not_a_kept_checkpoint(
    saved: Checkpoint, resume: str | os.PathLike[str], out: str | os.PathLike[str]
) -> None:
    """Raises ConfigError: ``resume`` is a checkpoint a run keeps
    (:mod:`seq2seq_kit.kept_checkpoints`) and the resumed run would write it in place: its
    saves would replace the checkpoint its run lists."""
    kept = RunRecord.from_dict(saved.meta).checkpoint
    if kept is not None and Path(out).resolve() == Path(resume).resolve():
        raise ConfigError(
            f"{resume}: the checkpoint of update {kept.get('update')} that its run keeps; "
            f"a run resumed from it goes on in another directory, "
            f"{option('out', metavar='DIR')} (resuming it in place would overwrite it)"
        )


def _configured(
    config: Config | str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | Sequence[Pair] | None,
    *,
    limit: int | None,
    epochs: int | None,
    seed: int | None,
    overwrite: bool | None,
    init_from: str | os.PathLike[str] | None = None,
) -> tuple[Config, tuple[Pair, ...] | None]:
    """A copy of the config :func:`train` is given with its keyword arguments set (those
    not None; ``data`` as ``data.source`` when a name or a path), and the pairs given as
    ``data``, checked.

    Raises:
        ConfigError: a value the config refuses, naming the key.
        DataError: pairs that are not (source, target) strings.
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
        if init_from is not None:
            cfg.train.init_from = os.fspath(init_from)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    pairs = None if data is None or isinstance(data, str) else check_pairs(data)
    return cfg, pairs


def _train(
    cfg: Config,
    out: Path | None,
    chosen: Backend,
    backend_name: str,
    pairs: tuple[Pair, ...] | None,
    saved: Checkpoint | None,
    changes: dict[str, list[Any]],
    launch: Launch | None = None,
    source: FineTune | None = None,
    table: PhraseTable | None = None,
) -> Translator:
    """Train on the run's data (a corpus's or text pairs'; a resumed run's checked to be
    the saved run's; a fine-tuned run's encoded with its model's vocabularies) with backend
    ``chosen``, joining ``launch``'s group if any; ``table``: the phrase table of
    ``[decode] replace_unk_table`` the model keeps."""
    if pairs is None and names_corpus(cfg.data.source):
        saved_vocabs = None if saved is None else (saved.source_vocab, saved.target_vocab)
        data = training_data(cfg, saved_vocabs)
    else:
        data = text_training_data(cfg, pairs, saved, None if source is None else source.vocabs)
    if saved is not None:
        check_same_data(saved, data.fingerprint, changes, data.where)
    if cfg.train.keep_best and not data.valid_pairs:
        raise ConfigError(
            f"{option('train.keep_best', cfg.train.keep_best)} ranks checkpoints by their "
            f"validation score, and this run has no validation pairs (data.valid, "
            f"data.valid_fraction); keep the latest with {option('train.keep_last', None)}"
        )
    source_vocab, target_vocab = data.vocabs
    if source is not None:
        spec = source.spec  # what the model's weights were trained as
    else:
        spec = model_spec(cfg, len(source_vocab), len(target_vocab))
    optimizer = optimizer_spec(cfg, spec)
    with engine(cfg, chosen, backend_name, launch) as running:
        return _train_model(cfg, out, running, data, spec, optimizer, saved, changes, source, table)


def _train_model(
    cfg: Config,
    out: Path | None,
    running: Engine,
    data: TrainingData,
    spec: Spec,
    optimizer: OptimizerSpec,
    saved: Checkpoint | None,
    changes: dict[str, list[Any]],
    source: FineTune | None,
    table: PhraseTable | None = None,
) -> Translator:
    """Build the model, restore the saved run into it when resuming (give it the weights of
    ``source`` when fine-tuning, its optimizer fresh), train it and return its translator;
    rank 0 writes ``out`` as it goes."""
    check_model_fits(spec, 3)
    with allocating(model_sizes(spec)):
        model = running.backend.create(
            spec, seed=cfg.train.seed, optimizer=optimizer, runtime=running.runtime
        )
    if source is not None:
        model.set_weights(source.checkpoint.weights)
    resumed = None
    if saved is not None:
        resumed = _resume(cfg, running, data, model, saved, changes)
        changes = resumed.changes
    # a resumed fine-tuned run keeps its lineage
    lineage = source.lineage if source else saved and RunRecord.from_dict(saved.meta).init_from
    record = _run_record(cfg, running, data, resumed, lineage or None)
    kept = None
    if out is not None and running.rank == 0:  # rank 0 alone writes the directory
        kept = _kept_checkpoints(cfg, out, resumed, saved)
        record.checkpoints = kept.listing() or None
    translator = Translator(
        model,
        *data.vocabs,
        backend=running.name,
        max_length=decoding_cap(spec, default_max_length(data.train[1])),
        meta=record.to_dict(),
    )
    translator.train_pairs, translator.valid_pairs = data.train_pairs, data.valid_pairs
    translator.phrase_table = table
    decoded = _decoded(cfg, translator, data)
    progress = RunSaves(translator, record, out, kept)
    state = None if resumed is None else resumed.state
    _fit(cfg, running, spec, data, progress, state, changes, decoded)
    translator.rank = running.rank
    return translator


def _resume(
    cfg: Config,
    running: Engine,
    data: TrainingData,
    model: Model,
    saved: Checkpoint,
    changes: dict[str, list[Any]],
) -> Continuation:
    """The saved run restored into ``model`` (:func:`continue_run`), logging the options
    changed on resume."""
    resumed = continue_run(
        saved,
        model,
        cfg,
        changes,
        backend=running.name,
        world_size=running.world_size,
        validating=bool(data.valid_pairs),
    )
    if resumed.changes:
        described = ", ".join(
            f"{k} {old!r} -> {new!r}" for k, (old, new) in resumed.changes.items()
        )
        log.info("changed on resume: %s", described)
    return resumed


def _kept_checkpoints(
    cfg: Config, out: Path, resumed: Continuation | None, saved: Checkpoint | None
) -> KeptCheckpoints:
    """The checkpoints the run keeps in ``out`` (``train.keep_last``, ``keep_best``): a
    resumed run carries over those the saved run kept up to the update it resumes at,
    when ``out`` holds the saved model (:class:`KeptCheckpoints`)."""
    train = cfg.train
    until = None if resumed is None else resumed.state.updates
    resumed_sha256 = None if saved is None else saved.weights_sha256
    return KeptCheckpoints(
        out,
        train.keep_last,
        train.keep_best,
        train.early_stopping_metric,
        until,
        resumed_sha256,
    )


def _decoded(cfg: Config, translator: Translator, data: TrainingData) -> DecodedValidation | None:
    """The decoded validation of the run (:func:`decoded_validation`)."""
    # decoded on the pairs the trainer validates on: the training pairs when there are no
    # validation pairs, for the record, as the loss is
    validating = len(data.valid[0]) > 0
    return decoded_validation(
        cfg,
        translator,
        data.valid_pairs if validating else data.train_pairs,
        data.valid[0] if validating else data.train[0],
    )


def _run_record(
    cfg: Config,
    running: Engine,
    data: TrainingData,
    resumed: Continuation | None,
    init_from: dict[str, Any] | None,
) -> RunRecord:
    """The record of this run before it trains: a resumed run's adds to the saved run's
    seconds and resumes; ``init_from``: the lineage of a fine-tuned run, kept on resume;
    ``examples`` from the validation sources, topped up from the training sources
    (:func:`run_examples`): a resumed run chooses them again from the same data, so the
    same."""
    return RunRecord(
        seq2seq_kit_version=__version__,
        backend=running.name,
        backend_version=running.backend.version,
        data=data.name,
        data_sha256=data.fingerprint,
        others=dict(data.meta),
        train_pairs=len(data.train_pairs),
        valid_pairs=len(data.valid_pairs),
        skipped_too_long=data.skipped,
        config=cfg.model_dump(mode="json"),
        seconds=0.0 if resumed is None else resumed.seconds,
        distributed=RunRecord.distributed_entry(
            running.launcher, running.world_size, cfg.train.batch_size
        ),
        resumes=[] if resumed is None else resumed.resumes,
        examples=run_examples(
            (data.valid_pairs, data.valid[0]), (data.train_pairs, data.train[0]), data.vocabs[0]
        ),
        init_from=init_from,
    )


def _fit(
    cfg: Config,
    running: Engine,
    spec: Spec,
    data: TrainingData,
    progress: RunSaves,
    state: TrainerState | None,
    changes: dict[str, list[Any]],
    decoded: DecodedValidation | None = None,
) -> TrainerState:
    """Run the trainer from ``state`` (None: from the start), telling plugins of its
    updates, validations and epochs (the first resumed epoch's record carries the
    ``changes``), saving through ``progress``; rank 0 alone tells and saves. ``decoded``
    scores the decoded outputs at each validation (``train.valid_metrics``)."""
    out_dir = None if progress.out is None else str(progress.out)
    first_epoch = 1 if state is None else state.epoch + 1
    hook = registry().manager.hook

    def on_epoch_end(record: dict[str, Any]) -> None:
        if changes and record["epoch"] == first_epoch:
            record["resumed_with"] = changes
        hook.on_epoch_end(record=record, out_dir=out_dir)

    def on_update(record: dict[str, Any]) -> None:
        hook.on_update(record=record, out_dir=out_dir)

    def on_validation(record: dict[str, Any]) -> None:
        hook.on_validation(record=record, out_dir=out_dir)

    lead = running.rank == 0  # the other ranks of a data-parallel run train the same updates
    with allocating(_training_sizes(cfg, spec)):
        state = fit(
            progress.translator.model,
            data.train,
            data.valid if len(data.valid[0]) else None,
            cfg.train,
            on_epoch_end=on_epoch_end if lead else None,
            state=state,
            save=None if out_dir is None or not lead else progress.save,
            out_dir=out_dir,
            on_update=on_update if lead else None,
            on_validation=on_validation if lead else None,
            group=running.group,
            decoded=decoded,
        )
    progress.note(state)
    if lead:
        hook.on_train_end(history=state.history, validations=state.validations, out_dir=out_dir)
    return state


def _training_sizes(cfg: Config, spec: Spec) -> str:
    """The settings that decide how much memory training takes, for an out-of-memory
    error: the batch, the length caps, and the model's sizes."""
    lengths = [
        f"data.{key} = {getattr(cfg.data, key)}"
        for key in ("max_source_length", "max_target_length")
        if getattr(cfg.data, key) is not None
    ]
    return (
        f"train.batch_size = {cfg.train.batch_size} ({cfg.train.batch_type}), "
        f"train.accumulate = {cfg.train.accumulate}, "
        f"{', '.join(lengths) or 'data.max_source_length / data.max_target_length (unset)'} "
        f"or {model_sizes(spec)}"
    )
