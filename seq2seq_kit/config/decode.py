"""``[decode]``: how ``translate``, ``evaluate`` and the server search by default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, GetCoreSchemaHandler, GetPydanticSchema

from ..section import MAX_LENGTH, Section


def _one_error(source: Any, handler: GetCoreSchemaHandler) -> Any:
    """The union's schema with one error naming every form it takes (pydantic would give
    one error per member, each under a name of its own: ``early_stopping.bool``...)."""
    schema = handler(source)
    schema["custom_error_type"] = "early_stopping_type"
    schema["custom_error_message"] = (
        "Input should be true, false, 'never' or a patience, a number above 0 and at most 100"
    )
    return schema


#: ``[decode] early_stopping``: Hugging Face's three values, or a patience (a number above
#: 0, at most 100: a sentence ends once ``beam * patience`` hypotheses have finished).
EarlyStopping = Annotated[
    bool | Literal["never"] | Annotated[float, Field(gt=0, le=100)],
    GetPydanticSchema(_one_error),
]


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
    early_stopping: EarlyStopping = Field(
        False,
        description="when a beam search stops (Hugging Face's early_stopping): false, once "
        "no live hypothesis can beat the n_best best finished ones if it ended at the next "
        "step (exact for length_penalty 0); never, once none can at max_length (exact; "
        "with a length penalty it searches on long after the best output); true, once "
        "beam hypotheses have finished (fairseq); a number X, once beam x X have "
        "(CTranslate2's patience, Kasai et al. 2022)",
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
