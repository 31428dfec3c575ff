"""Configuration: one TOML file per experiment, validated by pydantic.

Precedence for every key: command-line flag > environment (``SEQ2SEQ_KIT_BACKEND`` for the
backend) > config file > the defaults below, which reproduce the seed notebook (one-hot
characters, one LSTM layer of 32 units each side, Adam at 1e-3, batch size 2, 300 epochs).

These models are the one definition of every option: the command line's flags, their checks
and the configuration reference are generated from them. Relative paths in a config file
(``data.source``, ``data.valid``, ``train.init_from``, ``decode.replace_unk_table``) are
relative to the file's folder.

Each table has its module: ``[data]`` in :mod:`.data`, ``[train]`` in :mod:`.train`,
``[decode]`` in :mod:`.decode`, ``[serve]`` in :mod:`.serve`, and each architecture's
``[model]`` in :mod:`seq2seq_kit.architectures`; this module joins them into
:class:`Config` and reads a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from ..architectures import ARCHITECTURES, ModelConfig, RNNConfig
from ..architectures import TransformerConfig as TransformerConfig  # the [model] tables, here too
from ..data import DEFAULT_MAX_LINE_BYTES as DEFAULT_MAX_LINE_BYTES
from ..errors import ConfigError
from ..section import Section
from .data import DataConfig
from .decode import DecodeConfig
from .serve import ServeConfig
from .train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BACKEND_ENV = "SEQ2SEQ_KIT_BACKEND"
DEFAULT_BACKEND = "numpy"

#: Each architecture's ``[model]`` table, by the name ``model.architecture`` gives it.
MODEL_CONFIGS: dict[str, type[Section]] = {name: a.config for name, a in ARCHITECTURES.items()}

#: The largest config file read: a TOML config is a few kilobytes; a larger "config" is
#: another file given by mistake (``--config /dev/zero`` must not read forever).
MAX_CONFIG_BYTES = 1 << 20


class Config(Section):
    backend: str | None = Field(None, description="backend that trains the model (default numpy)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=RNNConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _shared_table_needs_shared_vocabulary(self) -> Config:
        # Refused here, before any data is read, not when the spec meets two vocabularies.
        # Fine-tuning keeps the model's vocabularies, which its saved spec already joined
        # (an imported model's sides share one piece list under two tokenizers).
        if (
            getattr(self.model, "share_embeddings", False)
            and not self.data.shared_vocabulary
            and self.train.init_from is None
        ):
            raise ValueError(
                "model.share_embeddings = true needs one vocabulary for both sides: set "
                "[data] shared_vocabulary = true (--shared-vocabulary)"
            )
        return self


def section_models(section: str) -> tuple[type[Section], ...]:
    """The model classes of ``[section]``: its one class, or for ``[model]`` each
    architecture's (:data:`MODEL_CONFIGS`), the default (RNN) first."""
    if section == "model":
        return tuple(MODEL_CONFIGS.values())
    return (type(Config.model_fields[section].default_factory()),)


#: Keys a resumed run may change (OpenNMT's reset options in spirit): how long to train, when
#: to stop, validate and save, the learning-rate's size and plateau cuts, display and decoding
#: defaults. Every other key defines what is trained (data, split, seed, vocabulary, model:
#: any [model] key, the architecture included) and must stay as saved.
#:
#: ``accumulate`` is fixed: it decides how an epoch's batches group into updates (a mid-epoch
#: save resumes at a group boundary, and the update count that the schedule reads depends on
#: it). ``lr_schedule`` and ``warmup_steps`` are fixed: the rate is a function of the update
#: count since the run began, so changing them mid-run would make it jump to a curve no single
#: configuration describes (``learning_rate`` may change: it scales the curve, as it scales a
#: constant rate).
#:
#: train.label_smoothing may change, as the learning rate may: it shapes the objective of the
#: steps still to come, not the weights or the optimizer state, and both fairseq (criterion
#: arguments) and OpenNMT-py (the loss is built from the new options) take it from the resumed
#: command line. The Adam keys (adam_beta1, adam_beta2, adam_epsilon) are fixed: the saved
#: moments were averaged with the saved decay rates and the bias correction 1 - beta**t
#: assumes one beta for all t; fairseq keeps the saved optimizer's betas unless
#: --optimizer-overrides, and OpenNMT-py's default -reset_optim none restores the saved
#: optimizer whole. Refusing the change says so instead of ignoring it. train.ema_decay is
#: fixed too: the saved average was taken with the saved decay, and a run that had none has
#: no average to go on from.
RESUMABLE = frozenset(
    {
        "train.epochs",
        "train.patience",
        "train.learning_rate",
        "train.label_smoothing",
        "train.lr_patience",
        "train.lr_factor",
        "train.min_learning_rate",
        "train.save_seconds",
        "train.progress",
        "train.log_seconds",
        "train.overwrite",
        "train.valid_every",
        "train.save_every",
        # which checkpoints stay in the directory, not what is trained; those a change drops
        # are removed at the next save
        "train.keep_last",
        "train.keep_best",
        "train.max_updates",
        "train.max_time",
        "train.log_every",
        "train.threads",
        "train.device",
        "train.precision",
        # how much of a line is read before refusing it: the pairs read are checked against
        # the saved run's all the same
        "data.max_line_bytes",
    }
    | {f"decode.{name}" for name in DecodeConfig.model_fields}
    | {f"serve.{name}" for name in ServeConfig.model_fields}
)


def explicit_keys(config: Config) -> dict[str, Any]:
    """The keys a file, a flag or an assignment set (pydantic's ``model_fields_set``, per
    section, so ``config.train.epochs = 5`` counts), as ``{"train": {"epochs": 5}, ...}``."""
    found: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            keys = {k: getattr(value, k) for k in value.model_fields_set}
            if keys:
                found[name] = keys
        elif name in config.model_fields_set:
            found[name] = value
    return found


def describe_resumable() -> str:
    """:data:`RESUMABLE` for messages: ``train.epochs, ..., decode.*``."""
    listed = sorted(k for k in RESUMABLE if not k.startswith(("decode.", "serve.")))
    return ", ".join([*listed, "decode.*", "serve.*"])


#: Keys holding paths, resolved against the config file's folder.
PATH_KEYS = (
    ("data", "source"),
    ("data", "valid"),
    ("train", "init_from"),
    ("decode", "replace_unk_table"),
)
#: Of :data:`PATH_KEYS`, those that may also name a registered dataset (a name wins).
_DATASET_KEYS = (("data", "source"), ("data", "valid"))


def describe_errors(exc: ValidationError, names: dict[tuple[str, ...], str] | None = None) -> str:
    """``key: reason`` for each problem of ``exc``, ``;``-separated; ``names`` maps a location
    (``("train", "epochs")``) to the name the user wrote it under (``--epochs``)."""
    names = names or {}
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if loc[:1] == ("model",) and loc[1:2] and loc[1] in MODEL_CONFIGS:
            chosen, loc = loc[1], loc[:1] + loc[2:]  # the union's tag: the user wrote model.KEY
            if err["type"] == "extra_forbidden" and len(loc) == 2:
                message = _other_architecture(loc[1], chosen) or message
        problems.append(f"{names.get(loc, '.'.join(loc))}: {message}" if loc else message)
    return "; ".join(problems)


def _other_architecture(key: str, chosen: str) -> str | None:
    """Why ``key`` is refused in the ``[model]`` of architecture ``chosen`` when it is
    another architecture's key (``num_heads`` beside ``architecture = "rnn"``); else None."""
    for name, model in MODEL_CONFIGS.items():
        if name != chosen and key in model.model_fields:
            return (
                f"a key of architecture {name!r}, but the model's architecture is {chosen!r} "
                f"(model.architecture, default 'rnn'); set architecture = {name!r} or remove it"
            )
    return None


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML config; ``None`` gives the defaults. Keys the file sets are
    the model's ``model_fields_set`` (a resumed run compares only those).

    Raises:
        ConfigError: missing file, a file over :data:`MAX_CONFIG_BYTES`, TOML syntax error
            (with line and column), unknown key or bad value (with its dotted key).
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: over {MAX_CONFIG_BYTES} bytes, too large for a config file (is it "
                f"another file?)"
            )
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:  # a folder, no permission
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    from ..data import looks_like_path
    from ..plugins import registry

    base = path.resolve().parent
    datasets = registry().datasets  # a dataset name wins over a file, as in load_dataset
    for section, key in PATH_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if not isinstance(value, str) or (not value and section == "decode"):
            continue  # an empty table is refused by its field, not made the folder
        named = (section, key) in _DATASET_KEYS
        if not named or (value not in datasets and looks_like_path(value, base)):
            data[section][key] = os.path.normpath(base / value)  # absolute ones stay
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from None


def resolve_backend(flag: str | None, config: Config) -> str:
    """The backend to use: ``flag``, else ``$SEQ2SEQ_KIT_BACKEND``, else the config's, else
    ``numpy``."""
    return flag or os.environ.get(BACKEND_ENV) or config.backend or DEFAULT_BACKEND
