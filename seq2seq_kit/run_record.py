"""The run record: what ``model.json`` says of the training that made a model, its
``meta`` object.

Training writes it (:class:`RunRecord` then :meth:`RunRecord.to_dict`); ``seq2seq-kit
info``, the training report, the server's model listing and a resumed run read it back
(:meth:`RunRecord.from_dict`). Its JSON is covered by the field digests of ``model.json``
(:mod:`seq2seq_kit.integrity`), so the keys, their order and their values are the file
format: a record written for a run is the ``meta`` object earlier versions wrote for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: The keys :class:`RunRecord` names, in the order ``model.json`` holds them; the data's
#: further entries (:attr:`RunRecord.others`) come after ``data_sha256``.
_HEAD = ("seq2seq_kit_version", "backend", "backend_version", "data", "data_sha256")
_BODY = ("train_pairs", "valid_pairs", "skipped_too_long", "config", "seconds", "distributed")
#: Written only when set: a run not fine-tuned has no ``init_from``, a run never resumed no
#: ``resumes``, a run not yet saved no ``history`` nor ``trainer``, a run saved before
#: validations were recorded (or resumed from one) no ``validations``, a run keeping no
#: checkpoints no ``checkpoints``, a directory that is no kept checkpoint no ``checkpoint``,
#: a run from before examples were recorded no ``examples``.
_TAIL = (
    "examples",
    "init_from",
    "resumes",
    "history",
    "validations",
    "trainer",
    "checkpoints",
    "checkpoint",
)


@dataclass
class RunRecord:
    """The ``meta`` object of ``model.json``.

    Read back (:meth:`from_dict`), each attribute is the value the file holds, unchecked
    (a damaged or hand-made file may hold anything: each reader checks what it relies on),
    or its default when the key is missing: ``None``, ``[]`` for :attr:`resumes`, ``{}``
    for :attr:`others`.

    Attributes:
        seq2seq_kit_version: the version that trained the model.
        backend: the backend's registered name; backend_version: its distribution's
            version.
        data: the dataset's name, the TSV path, ``"pairs"`` for pairs given in Python, or
            the corpus folder. data_sha256: SHA-256 of the training and validation pairs
            (:func:`seq2seq_kit.resume.data_fingerprint`), or the corpus's fingerprint.
        others: further keys, written after ``data_sha256``: the data's own (a corpus's
            ``{"corpus": {"path", "sha256"}}``) and, read back, any key this version does
            not name.
        train_pairs, valid_pairs: pairs trained and validated on, after the length filter;
            skipped_too_long: training pairs that filter skipped.
        config: the run's whole config as JSON (``Config.model_dump(mode="json")``).
        seconds: wall-clock seconds spent training, over every resumed run.
        distributed: ``{"launcher", "world_size", "batch_size_per_rank",
            "global_batch_size"}`` (:meth:`distributed_entry`).
        examples: a few source texts to try the model with, from its validation
            sources, topped up from its training sources when fewer qualify
            (:func:`seq2seq_kit.source_examples.run_examples`); None for a model saved
            before they were recorded, or not trained here (imported).
        init_from: the model a fine-tuned run started from (``train.init_from``):
            ``{"path", "weights_sha256"}``, its directory's absolute path and the SHA-256 of
            its ``weights.safetensors``; None for a run from initial weights.
        resumes: one ``{"after_epoch", "backend", "changed"}`` per resumed run, oldest
            first; ``changed`` maps a config key to ``[old, new]``.
        history: the trainer's records (:attr:`seq2seq_kit.translator.Translator.history`).
        validations: every validation of the run, in order, within epochs too
            (``TrainerState.validations``: ``{"update", "epoch", "step", "valid_loss",
            "valid_accuracy", "valid_<metric>"..., "evaluated_on", "best", "at_stop"}``);
            None for a run saved before they were recorded (its epoch ends are in
            :attr:`history`).
        trainer: the trainer's state (``TrainerState.to_json``: ``epoch``, ``step``,
            ``updates``, ``stopped``...), which a resumed run starts from.
        checkpoints: the checkpoints kept in the directory (``train.keep_last``,
            ``keep_best``), oldest first: one ``{"update", "epoch", "step", "metric",
            "score", "path", "weights_sha256"}`` each
            (:class:`seq2seq_kit.kept_checkpoints.Entry`).
        checkpoint: in a kept checkpoint's own directory, the validation it is of:
            ``{"update", "epoch", "step", "metric", "score"}``.
    """

    seq2seq_kit_version: str | None = None
    backend: str | None = None
    backend_version: str | None = None
    data: str | None = None
    data_sha256: str | None = None
    others: dict[str, Any] = field(default_factory=dict)
    train_pairs: int | None = None
    valid_pairs: int | None = None
    skipped_too_long: int | None = None
    config: dict[str, Any] | None = None
    seconds: float | None = None
    distributed: dict[str, Any] | None = None
    examples: list[str] | None = None
    init_from: dict[str, Any] | None = None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] | None = None
    validations: list[dict[str, Any]] | None = None
    trainer: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] | None = None
    checkpoint: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> RunRecord:
        """The record of a ``meta`` object as :meth:`to_dict` wrote it (or an earlier
        version did: missing keys take their defaults). Values are taken as they are, not
        copied."""
        named = {key: meta[key] for key in (*_HEAD, *_BODY, *_TAIL) if key in meta}
        others = {key: value for key, value in meta.items() if key not in named}
        return cls(**named, others=others)

    def to_dict(self) -> dict[str, Any]:
        """The ``meta`` object, keys in ``model.json``'s order; :attr:`resumes` only when
        there are any, :attr:`examples`, :attr:`init_from`, :attr:`history`, :attr:`validations`,
        :attr:`trainer`, :attr:`checkpoints` and :attr:`checkpoint` only when set.
        Values are the record's own, not copies."""
        meta = {key: getattr(self, key) for key in _HEAD}
        meta.update(self.others)
        meta.update({key: getattr(self, key) for key in _BODY})
        if self.examples is not None:
            meta["examples"] = self.examples
        if self.init_from is not None:
            meta["init_from"] = self.init_from
        if self.resumes:
            meta["resumes"] = self.resumes
        for key in ("history", "validations", "trainer", "checkpoints", "checkpoint"):
            if getattr(self, key) is not None:
                meta[key] = getattr(self, key)
        return meta

    @staticmethod
    def distributed_entry(launcher: str, world_size: int, batch_size: int) -> dict[str, Any]:
        """The :attr:`distributed` entry of a run by ``launcher`` (``"none"`` in one
        process, ``"torchrun"``, ``"tf_config"``) over ``world_size`` processes, each
        taking batches of ``batch_size`` (``train.batch_size``, in its ``batch_type``)."""
        return {
            "launcher": launcher,
            "world_size": world_size,
            "batch_size_per_rank": batch_size,
            "global_batch_size": batch_size * world_size,
        }

    @property
    def trainer_state(self) -> dict[str, Any]:
        """:attr:`trainer` when it is an object, else ``{}`` (missing or damaged)."""
        return self.trainer if isinstance(self.trainer, dict) else {}

    @property
    def updates(self) -> Any:
        """Optimizer updates done (``trainer.updates``); None when not recorded."""
        return self.trainer_state.get("updates")

    @property
    def stopped(self) -> Any:
        """Why training stopped (``trainer.stopped``: ``"epochs"``, ``"patience"``,
        ``"max_updates"``, ``"max_time"``, ``"interrupted"``); None when not recorded."""
        return self.trainer_state.get("stopped")

    @property
    def kept_validation(self) -> dict[str, Any] | None:
        """The validation the directory's weights (``weights.safetensors``) are of, as
        ``TrainerState.best_validation`` records one: ``{"metric"`` (the
        ``early_stopping_metric`` that chose them), ``"update", "epoch", "step",
        "valid_loss", "valid_accuracy"``, a ``"valid_<metric>"`` per decoded metric,
        ``"evaluated_on"}``.

        A run's directory holds the best weights by that metric: ``trainer.best_validation``
        (without validation pairs the last weights, and the latest validation, of the
        training pairs). A kept checkpoint (:attr:`checkpoint`) holds the weights of its
        own validation, found in :attr:`validations` by its update. None where no one
        validation scored the weights: an average of checkpoints (``meta.averaged``), an
        imported model, a run stopped before its first validation, or a model saved before
        this was recorded.
        """
        of = self.checkpoint
        if isinstance(of, dict):
            found = [
                v
                for v in self.validations or []
                if isinstance(v, dict)
                and v.get("update") == of.get("update")
                and not v.get("at_stop")
            ]
            if not found:
                return None
            figures = {k: v for k, v in found[0].items() if k not in ("best", "at_stop")}
            return {"metric": of.get("metric"), **figures}
        best = self.trainer_state.get("best_validation")
        return best if isinstance(best, dict) else None

    @property
    def corpus(self) -> dict[str, Any] | None:
        """The corpus the model was trained from (``{"path", "sha256"}``), None for text
        data."""
        return self.others.get("corpus")


#: The entries of ``meta`` that must be objects when present, and those that must be lists
#: of objects: every reader relies on these shapes.
_OBJECTS = ("config", "distributed", "init_from", "trainer", "checkpoint")
_LISTS = ("history", "validations", "resumes", "checkpoints")


def check_meta(meta: Any) -> dict[str, Any]:
    """``meta`` itself when it has the shapes its readers rely on: an object whose
    ``config`` (and the config's tables), ``distributed``, ``init_from``, ``trainer`` and
    ``checkpoint`` are objects or null, whose ``history``, ``validations``, ``resumes`` and
    ``checkpoints`` are lists of objects or null, ``examples`` a list of strings or null,
    ``distributed.world_size`` a positive integer and ``seconds`` a finite number >= 0.

    Raises:
        TypeError or ValueError: naming the first entry that is not so (``meta.config.decode
            must be an object, got list``).
    """
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be an object, got {type(meta).__name__}")
    config = meta.get("config")
    tables = config.items() if isinstance(config, dict) else ()
    entries = [(f"meta.{key}", meta.get(key)) for key in _OBJECTS]
    entries += [(f"meta.config.{key}", value) for key, value in tables if key != "backend"]
    for name, value in entries:
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} must be an object, got {type(value).__name__}")
    for key in _LISTS:
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            raise TypeError(f"meta.{key} must be a list of objects, got {value!r:.60}")
    examples = meta.get("examples")
    if examples is not None and not (
        isinstance(examples, list) and all(isinstance(text, str) for text in examples)
    ):
        raise TypeError(f"meta.examples must be a list of strings, got {examples!r:.60}")
    world = (meta.get("distributed") or {}).get("world_size", 1)
    if type(world) is not int or world < 1:
        raise ValueError(f"meta.distributed.world_size must be an integer >= 1, got {world!r:.40}")
    seconds = meta.get("seconds")
    if seconds is not None and not (
        type(seconds) in (int, float) and math.isfinite(seconds) and seconds >= 0
    ):
        raise ValueError(f"meta.seconds must be a finite number >= 0, got {seconds!r:.40}")
    return meta
