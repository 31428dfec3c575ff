"""Configuration: one TOML file per experiment, validated by pydantic.

Precedence for every key: command-line flag > environment (``SEQ2SEQ_KIT_BACKEND`` for the
backend) > config file > the defaults below, which reproduce the seed notebook (one-hot
characters, one LSTM layer of 32 units each side, Adam at 1e-3, batch size 2, 300 epochs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BACKEND_ENV = "SEQ2SEQ_KIT_BACKEND"
DEFAULT_BACKEND = "numpy"


class _Section(BaseModel):
    # validate_assignment: a bad value set from Python fails here, naming the key, not later
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = Field("digits", description="dataset name (digits, num2words) or TSV path")
    limit: int | None = Field(None, ge=1, description="use only the first N pairs")
    valid_fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="held-out share; default: the dataset's own"
    )
    valid: str | None = Field(
        None, description="validation set (TSV path or dataset); replaces valid_fraction"
    )
    tokenizer: Literal["char", "word"] = Field(
        "char", description="char: characters; word: whitespace-separated words"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the dataset loader"
    )


class ModelConfig(_Section):
    hidden_size: int = Field(32, ge=1, description="units of each recurrent layer")
    embedding_size: int = Field(0, ge=0, description="0: one-hot inputs")
    num_layers: int = Field(1, ge=1, description="stacked recurrent layers on each side")
    cell: Literal["lstm", "gru"] = Field("lstm", description="recurrent cell: lstm or gru")
    bidirectional: bool = Field(False, description="encoder reads both ways (H/2 units each)")
    attention: Literal["none", "dot", "general", "bahdanau"] = Field(
        "none", description="none, or Luong dot / general, or Bahdanau (additive) attention"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="during training only")


class TrainConfig(_Section):
    epochs: int = Field(300, ge=1, description="passes over the training pairs")
    batch_size: int = Field(2, ge=1, description="pairs per optimizer step")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    clip_norm: float = Field(5.0, ge=0, description="global gradient-norm clip; 0: off")
    seed: int = Field(0, ge=0, description="initial weights, shuffling, dropout and the split")
    patience: int = Field(0, ge=0, description="early stopping after N epochs not better; 0: off")
    early_stopping_metric: Literal["loss", "accuracy"] = Field(
        "loss",
        description="validation figure that picks the best weights and drives patience and "
        "lr_patience: loss (lower is better) or teacher-forced token accuracy (higher)",
    )
    bucket: bool = Field(False, description="batch pairs of similar length together")
    teacher_forcing: float = Field(
        1.0, gt=0.0, le=1.0, description="share of decoder inputs taken from the reference"
    )
    lr_patience: int = Field(0, ge=0, description="reduce the LR after N flat epochs; 0: off")
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0, description="LR multiplier on a plateau")
    min_learning_rate: float = Field(1e-6, ge=0.0, description="the LR is never reduced below")
    save_seconds: float = Field(
        30.0, ge=0.0, description="write the model directory at most this often; 0: each epoch"
    )
    progress: bool = Field(True, description="progress bar (on a terminal only)")


class DecodeConfig(_Section):
    beam: int = Field(1, ge=1, description="1: greedy")
    n_best: int = Field(1, ge=1, description="hypotheses returned per input")
    length_penalty: float = Field(0.0, ge=0, description="GNMT alpha")
    max_length: int | None = Field(None, ge=1, description="default: saved with the model")
    unknown: Literal["error", "replace"] = Field(
        "error", description="unseen input tokens: error naming them, or replace by <unk>"
    )
    batch_size: int = Field(256, ge=1, description="inputs decoded together")


class Config(_Section):
    backend: str | None = Field(None, description="backend that trains the model (default numpy)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML config; ``None`` gives the defaults.

    Raises:
        ConfigError: missing file, TOML syntax error (with line and column), unknown key or
            bad value (with its dotted key).
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def resolve_backend(flag: str | None, config: Config) -> str:
    """The backend to use: ``flag``, else ``$SEQ2SEQ_KIT_BACKEND``, else the config's, else
    ``numpy``."""
    return flag or os.environ.get(BACKEND_ENV) or config.backend or DEFAULT_BACKEND
