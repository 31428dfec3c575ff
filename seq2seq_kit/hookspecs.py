"""Hook specifications: what a ``seq2seq_kit`` plugin may implement.

A plugin is a module named by an entry point in the ``seq2seq_kit`` group; it implements
any of these functions decorated with ``seq2seq_kit.hookimpl``. Registering must stay cheap:
import no framework at module level (build the model lazily).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("seq2seq_kit")
hookimpl = pluggy.HookimplMarker("seq2seq_kit")


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register backends: call ``register(Backend(...))`` once per backend.

    ``Backend.build`` is called only when a model is built, so the framework is imported
    then, not at registration.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register datasets: call ``register(name, load)`` where ``load(**options)`` returns a
    :class:`seq2seq_kit.data.Dataset`. Options come from the ``[data]`` config table."""


@hookspec
def register_tokenizers(register: Callable[..., None]) -> None:
    """Register tokenizers: call ``register(name, make)`` where ``make(options, directory,
    prefix)`` returns a :class:`seq2seq_kit.tokenizers.Tokenizer`. ``options`` is the
    JSON-able dict of the config (``data.tokenizer_options`` and the per-side ones) or of a
    saved model; ``directory`` is None for a tokenizer about to be trained, or the model
    directory where its ``save(directory, prefix)`` wrote its files (read them from there,
    with that ``prefix``). ``make`` raises ``ValueError`` naming a bad option."""


@hookspec
def register_exporters(register: Callable[..., None]) -> None:
    """Register export formats: call ``register(name, export)`` where
    ``export(checkpoint: seq2seq_kit.checkpoint.Checkpoint, out: pathlib.Path)
    -> list[pathlib.Path]`` writes the model in that format at ``out`` (a directory it
    creates) and returns the files written; raises ``seq2seq_kit.errors.ExportError`` (a
    Seq2SeqError) naming what it cannot export.

    An exporter that writes quantized models registers the schemes it writes,
    ``register(name, export, schemes)`` (names of
    :data:`seq2seq_kit.quantization.SCHEMES`); ``export`` is then called with
    ``quantization=SCHEME`` for a quantized export, and never with a scheme it did not
    register.

    ``seq2seq-kit export --format NAME`` calls it with a checked checkpoint (finite
    weights) and a fresh path, then moves the directory into place."""


@hookspec
def register_importers(register: Callable[..., None]) -> None:
    """Register import formats: call ``register(name, read)`` where ``read(source:
    pathlib.Path) -> seq2seq_kit.checkpoint.Checkpoint`` reads a model another toolkit saved
    in directory ``source`` (weights in the canonical layout, both vocabularies with their
    tokenizers, ``meta`` saying where it came from) and raises
    ``seq2seq_kit.errors.ModelImportError`` (a Seq2SeqError) naming the file and the key it
    cannot import. It must never unpickle or execute what it reads.

    ``seq2seq-kit import --format NAME`` calls it, then saves the checkpoint as training
    saves a model directory (:mod:`seq2seq_kit.importers`)."""


@hookspec
def on_epoch_end(record: dict[str, Any], out_dir: str | None) -> None:
    """Called by the trainer after each epoch with ``{"epoch", "train_loss", "valid_loss",
    "valid_accuracy", "evaluated_on", "learning_rate", "seconds", "updates"}`` (losses in
    nats per target token, accuracy 0..1, seconds of wall time, updates over the whole
    run), plus ``"valid_<metric>"`` for each metric of ``train.valid_metrics``
    (``valid_chrf``, ``valid_bleu``, ``valid_ter`` 0..100; ``valid_exact_match``,
    ``valid_cer``, ``valid_token_error_rate`` 0..1: the decoded outputs' scores), and the
    model directory being written, or None. An implementation may take either argument
    alone."""


@hookspec
def on_update(record: dict[str, Any], out_dir: str | None) -> None:
    """Called every ``train.log_every`` updates (none when it is 0) with ``{"update",
    "epoch", "step", "train_loss", "learning_rate", "target_tokens_per_second"}``: the
    update count over the whole run, the epoch being trained and its batches done, the
    token-weighted mean training loss (nats per target token) since the previous call, the
    last update's learning rate, and target tokens per second of update time; ``out_dir``
    as for ``on_epoch_end``."""


@hookspec
def on_validation(record: dict[str, Any], out_dir: str | None) -> None:
    """Called after every validation (at each epoch end, every ``train.valid_every``
    updates, and when ``max_updates`` or ``max_time`` stops training) with ``{"update",
    "epoch", "step", "valid_loss", "valid_accuracy", "evaluated_on", "best", "at_stop"}``
    and a ``"valid_<metric>"`` per decoded metric as in ``on_epoch_end`` (``best``: the
    score of ``train.early_stopping_metric`` improved on the best so far; ``at_stop``: a
    validation made only because training stopped between validation points, which is
    never ``best`` and counts for neither patience nor the learning rate); ``out_dir`` as
    for ``on_epoch_end``."""


@hookspec
def on_train_end(
    history: list[dict[str, Any]],
    validations: list[dict[str, Any]] | None,
    out_dir: str | None,
) -> None:
    """Called once training is done with every epoch record (and the ``"at_stop"`` records
    of stops within an epoch: :func:`seq2seq_kit.trainer.epoch_records` drops them), every
    validation made, within epochs too, as ``on_validation`` received them (None for a run
    resumed from a model saved before validations were recorded), and the model directory
    (None when the model is not saved). The directory is complete when this runs. An
    implementation takes the arguments it names, e.g. ``on_train_end(history, out_dir)``."""
