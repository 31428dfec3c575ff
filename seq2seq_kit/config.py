"""Configuration: one TOML file per experiment, validated by pydantic.

Precedence for every key: command-line flag > environment (``SEQ2SEQ_KIT_BACKEND`` for the
backend) > config file > the defaults below, which reproduce the seed notebook (one-hot
characters, one LSTM layer of 32 units each side, Adam at 1e-3, batch size 2, 300 epochs).

These models are the one definition of every option: the command line's flags, their checks
and the configuration reference are generated from them. Relative paths in a config file
(``data.source``, ``data.valid``) are relative to the file's folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from .architectures import ARCHITECTURES, ModelConfig, RNNConfig
from .architectures import TransformerConfig as TransformerConfig  # the [model] tables, here too
from .data import DEFAULT_MAX_LINE_BYTES
from .errors import ConfigError
from .runtime import DEVICE_PATTERN, MAX_THREADS
from .section import MAX_COUNT, Section

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


class DataConfig(Section):
    source: str = Field(
        "digits",
        description="dataset name (digits, num2words, nato), TSV path, or a corpus folder "
        "written by seq2seq-kit preprocess",
    )
    limit: int | None = Field(None, ge=1, le=MAX_COUNT, description="use only the first N pairs")
    max_line_bytes: int = Field(
        DEFAULT_MAX_LINE_BYTES,
        ge=1,
        le=1 << 30,
        description="most bytes a line of a data file or of translate's input may hold (its "
        "line end not counted); a longer one is an error naming file and line, raised "
        "before more is read",
    )
    valid_fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="held-out share; default: the dataset's own"
    )
    valid: str | None = Field(
        None, description="validation set (TSV path or dataset); replaces valid_fraction"
    )
    tokenizer: str = Field(
        "char",
        min_length=1,
        description="both sides' tokenizer: char, word, sentencepiece, or a plugin's",
    )
    source_tokenizer: str | None = Field(
        None, min_length=1, description="the source side's; default: tokenizer"
    )
    target_tokenizer: str | None = Field(
        None, min_length=1, description="the target side's; default: tokenizer"
    )
    tokenizer_options: dict[str, Any] = Field(
        default_factory=dict,
        description="both sides' tokenizer options, e.g. word: {min_frequency, max_size}; "
        "sentencepiece: {model_type = unigram|bpe, vocab_size, character_coverage}",
    )
    source_tokenizer_options: dict[str, Any] = Field(
        default_factory=dict, description="the source side's, over tokenizer_options"
    )
    target_tokenizer_options: dict[str, Any] = Field(
        default_factory=dict, description="the target side's, over tokenizer_options"
    )
    shared_vocabulary: bool = Field(
        False,
        description="one vocabulary (and one learned tokenizer model) over both sides",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the dataset loader"
    )
    max_source_length: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="skip training pairs whose source has more tokens (counted in the log and "
        "model.json); default: keep all",
    )
    max_target_length: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="skip training pairs whose target has more tokens (counted in the log and "
        "model.json); default: keep all",
    )

    def side(self, side: str) -> tuple[str, dict[str, Any]]:
        """The tokenizer name and options of ``side`` (``"source"`` or ``"target"``)."""
        name = getattr(self, f"{side}_tokenizer") or self.tokenizer
        return name, {**self.tokenizer_options, **getattr(self, f"{side}_tokenizer_options")}

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataConfig:
        if self.valid is not None and self.valid_fraction is not None:
            raise ValueError(
                "valid and valid_fraction exclude each other: a validation file replaces the "
                "held-out share"
            )
        if self.shared_vocabulary and self.side("source") != self.side("target"):
            raise ValueError(
                "shared_vocabulary needs one tokenizer with the same options on both sides, "
                f"got source {self.side('source')} and target {self.side('target')}"
            )
        return self


class TrainConfig(Section):
    epochs: int = Field(300, ge=1, le=MAX_COUNT, description="passes over the training pairs")
    # 2**24: a batch of 16 million pairs or tokens, far above what any accelerator holds
    batch_size: int = Field(
        2,
        ge=1,
        le=1 << 24,
        description="per optimizer step: pairs (batch_type = sentences) or at most this many "
        "padded tokens (batch_type = tokens)",
    )
    batch_type: Literal["sentences", "tokens"] = Field(
        "sentences",
        description="unit of batch_size: sentences (pairs) or tokens (rows x the longest "
        "source or target, BOS included, in the batch, as fairseq's --max-tokens; a pair over "
        "batch_size tokens trains alone); bucket = true batches pairs of similar length",
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    clip_norm: float = Field(5.0, ge=0, description="global gradient-norm clip; 0: off")
    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="epsilon of label smoothing in the training loss (Szegedy et al. 2016); 0: off",
    )
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam's first-moment decay")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam's second-moment decay")
    adam_epsilon: float = Field(1e-7, gt=0.0, description="Adam's stability term")
    # 2**32 - 1: the widest seed every framework's generator takes (NumPy, torch, TF, JAX)
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="initial weights, shuffling, dropout and the split"
    )
    patience: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="early stopping after N validations not better (epochs, unless "
        "valid_every); 0: off",
    )
    early_stopping_metric: Literal["loss", "accuracy"] = Field(
        "loss",
        description="validation figure that picks the best weights and drives patience and "
        "lr_patience: loss (lower is better) or teacher-forced token accuracy (higher)",
    )
    bucket: bool = Field(False, description="batch pairs of similar length together")
    teacher_forcing: float = Field(
        1.0, gt=0.0, le=1.0, description="share of decoder inputs taken from the reference"
    )
    lr_patience: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="reduce the LR after N flat validations (epochs, unless valid_every); 0: off",
    )
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0, description="LR multiplier on a plateau")
    min_learning_rate: float = Field(1e-6, ge=0.0, description="the LR is never reduced below")
    save_seconds: float = Field(
        30.0, ge=0.0, description="write the model directory at most this often; 0: each epoch"
    )
    progress: bool = Field(True, description="progress bar (on a terminal only)")
    log_seconds: float = Field(
        1.0,
        ge=0.0,
        description="at most one epoch line per this many seconds (the first, the last and an "
        "early stop always); 0: every epoch",
    )
    overwrite: bool = Field(
        False,
        description="replace what an earlier run wrote at the output path (train: a model "
        "directory; preprocess: a corpus); never a folder of other files",
    )
    # Training measured in updates (Transformer recipes). An update is one optimizer step
    # on ``accumulate`` batches; updates are counted over the whole run, resumes included.
    lr_schedule: Literal["constant", "noam", "inverse_sqrt"] = Field(
        "constant",
        description="step size of update n (from 1): constant (learning_rate, after a linear "
        "warmup over warmup_steps), noam (learning_rate * d_model^-0.5 * min(n^-0.5, n * "
        "warmup_steps^-1.5), Vaswani et al. 2017; d_model is hidden_size for an RNN) or "
        "inverse_sqrt (learning_rate * min(n / warmup_steps, sqrt(warmup_steps / n)), fairseq)",
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="updates of warmup; noam and inverse_sqrt need >= 1; 0: none",
    )
    # 65536: far above any recipe's (fairseq's --update-freq is rarely over 100); each
    # update holds its batches, so this bounds what one update keeps in memory
    accumulate: int = Field(
        1,
        ge=1,
        le=65536,
        description="batches per update: the gradient of N consecutive batches together makes "
        "one optimizer step (fairseq's --update-freq); an epoch's leftover batches make a "
        "shorter last one",
    )
    valid_every: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="also validate every N updates (patience and lr_patience then count "
        "validations, not epochs); 0: at epoch ends only",
    )
    save_every: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="also write the model directory every N updates (a mid-epoch save "
        "resumes exactly); 0: at epoch ends only",
    )
    max_updates: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="stop after N updates in all, validated and saved; 0: no limit",
    )
    max_time: float = Field(
        0.0,
        ge=0.0,
        description="stop after the update that ends X seconds of this run's training "
        "(a resumed run has its own budget), validated and saved; 0: no limit",
    )
    log_every: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="a line every N updates: update, epoch, mean train loss since the last "
        "line, learning rate, target tokens/s; 0: none",
    )
    threads: int = Field(
        0,
        ge=0,
        le=MAX_THREADS,
        description="intra-op threads of each training process; 0: OMP_NUM_THREADS when "
        "set, else the cores no other process runs on at the start, shared among this "
        "machine's processes of the run",
    )
    device: str = Field(
        "auto",
        pattern=DEVICE_PATTERN,
        description="auto (a GPU when the backend finds one), cpu, cuda or cuda:N; under "
        "a launcher, cuda is each process's local rank's GPU",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="fp32, or mixed precision bf16 / fp16 (weights, loss and optimizer "
        "state stay float32; fp16 scales the loss)",
    )

    @model_validator(mode="after")
    def _schedule_needs(self) -> TrainConfig:
        if self.lr_schedule == "constant":
            return self
        if self.warmup_steps < 1:
            raise ValueError(
                f"lr_schedule = {self.lr_schedule!r} needs warmup_steps >= 1 (updates of "
                f"warmup), got {self.warmup_steps}"
            )
        if self.lr_patience:
            # the schedule sets every update's rate; a plateau cut would be overwritten
            raise ValueError(
                f"lr_schedule = {self.lr_schedule!r} sets the learning rate of every update, "
                f"so lr_patience = {self.lr_patience} (plateau reduction) cannot apply: set "
                f"lr_patience = 0, or lr_schedule = 'constant'"
            )
        return self


class DecodeConfig(Section):
    # Upper bounds: far above any use, so that a typo is an error before decoding allocates
    # (batch_size x beam rows of max_length tokens, and their attention weights).
    beam: int = Field(1, ge=1, le=1024, description="1: greedy")
    n_best: int = Field(
        1,
        ge=1,
        le=1024,
        description="hypotheses returned per input (widens the beam to at least this)",
    )
    length_penalty: float = Field(
        0.0,
        ge=0,
        le=10,
        description="GNMT alpha (usual values 0.6 to 2; above 10 the penalty leaves float "
        "precision on long outputs)",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        le=1 << 20,
        description="most output tokens per input; default: saved with the model",
    )
    unknown: Literal["error", "replace"] = Field(
        "error", description="unseen input tokens: error naming them, or replace by <unk>"
    )
    batch_size: int = Field(256, ge=1, le=65536, description="inputs decoded together")


class ServeConfig(Section):
    host: str = Field(
        "127.0.0.1",
        description="address to listen on (0.0.0.0: every interface; put a proxy before it)",
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0: any free one (printed)")
    batch_window_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long a batch waits at most for more requests (ms; 0: never)",
    )
    max_batch: int = Field(
        256,
        ge=1,
        le=65536,
        description="texts of several requests decoded together (at most; as decode.batch_size)",
    )
    max_queue: int = Field(
        1024,
        ge=1,
        le=1 << 24,
        description="texts accepted and not yet answered, per model, before 503",
    )
    max_texts: int = Field(64, ge=1, le=65536, description="texts per request (more: 413)")
    max_text_chars: int = Field(
        1000, ge=1, le=1 << 20, description="characters per text (more: 413)"
    )
    max_beam: int = Field(16, ge=1, le=1024, description="largest beam a request may ask for")
    max_n_best: int = Field(16, ge=1, le=1024, description="largest n_best a request may ask for")
    max_max_length: int = Field(
        512,
        ge=1,
        le=1 << 20,
        description="largest max_length a request may ask for (and the default's cap)",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1, le=1 << 30, description="request body size in bytes (more: 413)"
    )
    max_attention_weights: int = Field(
        1_000_000,
        ge=1,
        le=1 << 32,
        description="attention weights a reply may hold: texts x n_best x (max_length + 1) x "
        "source tokens, counted before decoding (more: 422)",
    )
    max_header_bytes: int = Field(
        1 << 16,
        ge=1 << 10,
        le=1 << 24,
        description="size of a request's head (request line and headers) in bytes (more: "
        "431, connection closed)",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds a request's headers may take to arrive, from the connection's "
        "opening or the request's first byte (more: 408, connection closed)",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds a request's body may take to arrive, from the end of its headers "
        "(more: 408, connection closed)",
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="seconds an idle keep-alive connection is kept open"
    )
    max_connections: int = Field(
        512,
        ge=1,
        le=1 << 20,
        description="open connections, idle ones included; more are refused (503) (lowered "
        "to what the process's open-file limit allows)",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="seconds a stop waits for requests in progress before it refuses them "
        "(503) and exits",
    )

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServeConfig:
        if self.max_queue < self.max_texts:
            raise ValueError(
                f"max_queue = {self.max_queue} is below max_texts = {self.max_texts}: a "
                f"request of max_texts texts could never be queued; raise max_queue"
            )
        return self


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
        if getattr(self.model, "share_embeddings", False) and not self.data.shared_vocabulary:
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
#: optimizer whole. Refusing the change says so instead of ignoring it.
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
PATH_KEYS = (("data", "source"), ("data", "valid"))


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
    from .data import looks_like_path
    from .plugins import registry

    base = path.resolve().parent
    datasets = registry().datasets  # a dataset name wins over a file, as in load_dataset
    for section, key in PATH_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and value not in datasets and looks_like_path(value, base):
            data[section][key] = os.path.normpath(base / value)  # absolute ones stay
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from None


def resolve_backend(flag: str | None, config: Config) -> str:
    """The backend to use: ``flag``, else ``$SEQ2SEQ_KIT_BACKEND``, else the config's, else
    ``numpy``."""
    return flag or os.environ.get(BACKEND_ENV) or config.backend or DEFAULT_BACKEND
