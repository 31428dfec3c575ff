"""Fine-tuning (``train.init_from``): a new run that starts from a trained model's weights
and keeps its architecture, tokenizers and vocabularies, with a fresh optimizer and a
learning-rate schedule from update 0 (OpenNMT-py's ``-train_from`` with ``-reset_optim
all``, fairseq's ``--finetune-from-model``).

:func:`fine_tuning` loads the model and fits the run's config to it, refusing the keys set
against it; the run then encodes its data with the model's vocabularies
(:func:`seq2seq_kit.text_data.text_training_data`), gives the built model the weights and
records where they came from (:attr:`seq2seq_kit.run_record.RunRecord.init_from`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .architectures import architecture_of
from .checkpoint import Checkpoint, load_checkpoint
from .config import Config, explicit_keys
from .config.data import DataConfig
from .errors import CheckpointError, ConfigError, option
from .run_record import RunRecord
from .spec import Spec
from .tokenizers import make_tokenizer
from .vocab import Vocabulary

#: The ``[data]`` keys that decide the tokenizers and vocabularies, which a fine-tuned run
#: takes from its model.
TOKENIZER_KEYS = (
    "tokenizer",
    "source_tokenizer",
    "target_tokenizer",
    "tokenizer_options",
    "source_tokenizer_options",
    "target_tokenizer_options",
    "shared_vocabulary",
)


#: ``[model]`` values a fine-tuned run may switch between, by key: the weights stay as they
#: are (a position table trained, or kept fixed, from here on).
SWITCHABLE = {"positions": frozenset({"learned", "table"})}


@dataclass
class FineTune:
    """The model a run is fine-tuned from.

    Attributes:
        checkpoint: the model directory as loaded (integrity and finite weights checked).
        lineage: what the run records of it: ``{"path", "weights_sha256"}``.
        spec: the spec the run trains: the model's, its positions switched between
            ``"table"`` and ``"learned"`` when the config asks (:data:`SWITCHABLE`).
    """

    checkpoint: Checkpoint
    lineage: dict[str, Any]
    spec: Spec

    @property
    def vocabs(self) -> tuple[Vocabulary, Vocabulary]:
        """The model's source and target vocabularies, with their tokenizers."""
        return self.checkpoint.source_vocab, self.checkpoint.target_vocab


def fine_tuning(
    cfg: Config, out: str | os.PathLike[str] | None, corpus: bool
) -> tuple[Config, FineTune]:
    """Load the model ``cfg.train.init_from`` names and return a copy of ``cfg`` with its
    ``[model]`` table and tokenizer keys (:data:`TOKENIZER_KEYS`) set to the model's and
    ``train.init_from`` made absolute, with the model. ``out``: the run's output directory;
    ``corpus``: the run's data is a binarized corpus. A key of :data:`SWITCHABLE` set to
    another of its values is taken (``model.positions = "learned"`` trains an imported
    position ``"table"``).

    Raises:
        CheckpointError: the model directory is missing, damaged or holds non-finite
            weights (named with ``train.init_from``).
        ConfigError: ``out`` is that directory (training would overwrite it); the data is a
            corpus (its ids come from its own vocabularies); a ``[model]`` key or a
            tokenizer key set (a file's key, a flag) to another value than the model's,
            naming each with both values.
    """
    where = option("train.init_from", cfg.train.init_from)
    try:
        path = Path(str(cfg.train.init_from)).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise CheckpointError(f"{where}: cannot find the directory it names ({exc})") from None
    if out is not None and Path(out).resolve() == path:
        raise ConfigError(
            f"{where}: the output directory is the model to fine-tune, which training would "
            f"overwrite; write the fine-tuned model elsewhere ({option('out', metavar='DIR')})"
        )
    if corpus:
        raise ConfigError(
            f"{where}: data.source {cfg.data.source!r} is a binarized corpus, whose ids come "
            f"from its own vocabularies, not the model's: fine-tune from the text pairs (a "
            f"TSV file or a dataset)"
        )
    try:
        ckpt = load_checkpoint(path, finite=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    conflicts = _model_conflicts(cfg, ckpt.spec) + _tokenizer_conflicts(cfg, ckpt)
    if conflicts:
        raise ConfigError(
            f"{where}: "
            + "; ".join(conflicts)
            + ". A fine-tuned run keeps the model's architecture, tokenizers and "
            f"vocabularies: leave these keys out, or train a new model without "
            f"{option('train.init_from', None)}"
        )
    cfg = cfg.model_copy(deep=True)
    cfg.data = DataConfig.model_validate({**cfg.data.model_dump(), **_tokenizer_keys(ckpt)})
    switched = {
        key: value
        for key, value in explicit_keys(cfg).get("model", {}).items()
        if key in SWITCHABLE and value in SWITCHABLE[key]
    }
    spec = replace(ckpt.spec, **switched)
    cfg.model = architecture_of(spec).config.model_validate(saved_model_keys(spec))
    cfg.train.init_from = str(path)
    lineage = {"path": str(path), "weights_sha256": ckpt.weights_sha256}
    return cfg, FineTune(ckpt, lineage, spec)


def saved_model_keys(spec: Spec) -> dict[str, Any]:
    """The ``[model]`` table of ``spec``: its keys without the vocabulary sizes."""
    keys = spec.to_dict()
    for size in ("src_vocab_size", "tgt_vocab_size"):
        keys.pop(size)
    return keys


def _model_conflicts(cfg: Config, spec: Spec) -> list[str]:
    """``model.KEY is OLD in the model but NEW now`` for each ``[model]`` key ``cfg`` sets
    to another value than ``spec``'s (or that ``spec``'s architecture lacks)."""
    saved = saved_model_keys(spec)
    conflicts = []
    for key, new in explicit_keys(cfg).get("model", {}).items():
        if key not in saved:
            conflicts.append(
                f"model.{key} is {new!r} now but no key of the model's architecture "
                f"{spec.architecture!r}"
            )
        elif saved[key] != new and not {saved[key], new} <= SWITCHABLE.get(key, frozenset()):
            conflicts.append(f"model.{key} is {saved[key]!r} in the model but {new!r} now")
    return conflicts


def _tokenizer_conflicts(cfg: Config, ckpt: Checkpoint) -> list[str]:
    """What the tokenizer keys ``cfg`` sets ask for that differs from the model's
    tokenizers, each naming the keys set."""
    given = [key for key in TOKENIZER_KEYS if key in explicit_keys(cfg).get("data", {})]
    conflicts = []
    for side, vocab in (("source", ckpt.source_vocab), ("target", ckpt.target_vocab)):
        keys = [k for k in given if k in (f"{side}_tokenizer", f"{side}_tokenizer_options")]
        keys += [k for k in given if k in ("tokenizer", "tokenizer_options")]
        if not keys:
            continue
        name, options = cfg.data.side(side)
        # the options with their defaults filled in; an unknown tokenizer or a bad option
        # differs all the same
        with contextlib.suppress(ValueError):
            options = make_tokenizer(name, options).options()
        saved = (vocab.tokenizer_name, vocab.tokenizer.options())
        if (name, options) != saved:
            conflicts.append(
                f"the {side} tokenizer is {saved[0]!r} with options {saved[1]} in the model "
                f"but {name!r} with options {options} now "
                f"({', '.join(f'data.{k}' for k in keys)})"
            )
    shared = _shared(ckpt)
    if "shared_vocabulary" in given and cfg.data.shared_vocabulary != shared:
        conflicts.append(
            f"data.shared_vocabulary is {shared!r} in the model but "
            f"{cfg.data.shared_vocabulary!r} now"
        )
    return conflicts


def _shared(ckpt: Checkpoint) -> bool:
    """Whether the model's two sides have one vocabulary."""
    return ckpt.source_vocab.to_dict() == ckpt.target_vocab.to_dict()


def _tokenizer_keys(ckpt: Checkpoint) -> dict[str, Any]:
    """The :data:`TOKENIZER_KEYS` that describe the model's tokenizers, as recorded in the
    fine-tuned run's config."""
    source, target = ckpt.source_vocab, ckpt.target_vocab
    same = (source.tokenizer_name, source.tokenizer.options()) == (
        target.tokenizer_name,
        target.tokenizer.options(),
    )
    return {
        "tokenizer": source.tokenizer_name,
        "source_tokenizer": None,
        "target_tokenizer": None if same else target.tokenizer_name,
        "tokenizer_options": source.tokenizer.options(),
        "source_tokenizer_options": {},
        "target_tokenizer_options": {} if same else target.tokenizer.options(),
        "shared_vocabulary": _shared(ckpt),
    }


def check_not_resumed(cfg: Config, saved: Checkpoint, resume: str | os.PathLike[str]) -> Config:
    """Refuse ``train.init_from`` set (a file's key, a flag) for a resumed run, unless it
    names the model the saved run was itself fine-tuned from (the same config file, given
    again); returns ``cfg``, its ``init_from`` then the one recorded.

    Raises:
        ConfigError: naming both options and what each means.
    """
    given = explicit_keys(cfg).get("train", {}).get("init_from")
    if given is None:
        return cfg
    recorded = RunRecord.from_dict(saved.meta).init_from
    path = recorded.get("path") if isinstance(recorded, dict) else None
    try:
        same = isinstance(path, str) and Path(path) == Path(given).resolve()
    except (RuntimeError, OSError):
        same = False
    if not same:
        raise ConfigError(
            f"{option('train.init_from', given)} and {option('resume', resume)} exclude each "
            f"other: resuming continues the saved run from its own last weights, optimizer "
            f"and schedule; init_from starts a new run from a model's weights with a fresh "
            f"optimizer and schedule. Leave out one"
        )
    cfg = cfg.model_copy(deep=True)
    cfg.train.init_from = path
    return cfg
