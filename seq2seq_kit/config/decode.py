"""``[decode]``: how ``translate``, ``evaluate`` and the server search by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..section import MAX_LENGTH, Section


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
        le=MAX_LENGTH,
        description="most output tokens per input; default: saved with the model",
    )
    unknown: Literal["error", "replace"] = Field(
        "error",
        description="unseen input tokens (and the training pieces a fine-tuned model's "
        "vocabulary lacks): error naming them, or replace by <unk>",
    )
    batch_size: int = Field(256, ge=1, le=65536, description="inputs decoded together")
