"""``[data]``: where the pairs come from, how they are tokenized and split."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ..data import DEFAULT_MAX_LINE_BYTES
from ..section import MAX_COUNT, Section


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
