"""``[decode]``: how ``translate``, ``evaluate`` and the server search by default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, GetCoreSchemaHandler, GetPydanticSchema, model_validator

from ..section import MAX_LENGTH, MAX_SEED, Section


class DecodeRuleError(ValueError):
    """A rule across ``[decode]`` keys broken; ``option`` is the key to change (a server
    names it as the request's field)."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


#: The sampling keys and their values when sampling is off (their defaults).
SAMPLING_DEFAULTS = {
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "num_samples": 1,
    "seed": None,
}


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
    sampling: bool = Field(
        False,
        description="draw each output token at random from the model's distribution (shaped "
        "by temperature, top_k and top_p) instead of searching; needs beam 1 and n_best 1",
    )
    temperature: float = Field(
        1.0,
        gt=0,
        le=100,
        description="sampling: log-probabilities divided by it before drawing (below 1 "
        "sharper, towards 0 greedy; above 1 flatter)",
    )
    top_k: int = Field(
        0,
        ge=0,
        le=1 << 24,
        description="sampling: draw among the top_k most likely tokens only; 0: all",
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="sampling: draw from the smallest set of most likely tokens whose "
        "probability reaches top_p (nucleus sampling, Holtzman et al. 2020); 1: all",
    )
    num_samples: int = Field(
        1,
        ge=1,
        le=1024,
        description="sampling: outputs drawn per input, ranked best first as an n-best list",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="sampling: the seed that reproduces a run's samples (the same input "
        "gives the same samples in any batch); default: a fresh one each run",
    )
    min_length: int = Field(
        0,
        ge=0,
        le=MAX_LENGTH,
        description="fewest tokens an output holds before its end (a target prefix "
        "counts; at most max_length); 0: any",
    )
    no_repeat_ngram_size: int = Field(
        0,
        ge=0,
        le=MAX_LENGTH,
        description="no output holds the same n-gram of this many tokens twice (a target "
        "prefix's count); 0: off",
    )
    banned_tokens: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        max_length=65536,
        description="target tokens never output, as the target vocabulary spells them "
        "(flag: comma-separated, spaces around each trimmed; a token with a comma or a "
        "space belongs in a config file)",
    )

    alignments: bool = Field(
        False,
        description="give each output token the source position it attends to most "
        "(attention models): translate prints them as i-j pairs (source-target, 0-based, "
        "in model tokens) in an extra TAB column",
    )
    replace_unk: bool = Field(
        False,
        description="let the model output <unk> and replace each by the source token it "
        "attends to most, or by that token's entry in replace_unk_table (attention "
        "models; Luong et al. 2015)",
    )
    replace_unk_table: str | None = Field(
        None,
        min_length=1,
        description="replace_unk: a phrase table of 'source token<TAB>target text' lines "
        "(UTF-8; a blank line skipped); a source token it lists is replaced by its target "
        "text, others by themselves. Training reads it first and copies it into the model "
        "directory",
    )

    @model_validator(mode="after")
    def _table_needs_replace_unk(self) -> DecodeConfig:
        if self.replace_unk_table is not None and not self.replace_unk:
            raise DecodeRuleError(
                f"decode.replace_unk_table = {self.replace_unk_table!r} applies to "
                f"replace_unk only: set decode.replace_unk = true (flag --replace-unk) or "
                f"leave replace_unk_table out",
                "replace_unk_table",
            )
        return self

    @model_validator(mode="after")
    def _sampling_keys_need_sampling(self) -> DecodeConfig:
        if self.sampling:
            for key in ("beam", "n_best"):
                if getattr(self, key) != 1:
                    raise DecodeRuleError(
                        f"decode.{key} = {getattr(self, key)} with decode.sampling: sampling "
                        f"draws its outputs one token at a time (decode.num_samples of them "
                        f"per input); set {key} to 1",
                        "sampling",
                    )
            return self
        for key, default in SAMPLING_DEFAULTS.items():
            if getattr(self, key) != default:
                raise DecodeRuleError(
                    f"decode.{key} = {getattr(self, key)!r} applies to sampling only: set "
                    f"decode.sampling = true (flag --sampling) or leave {key} out",
                    key,
                )
        return self

    @property
    def outputs_per_input(self) -> int:
        """The most hypotheses an input gets: ``num_samples`` when sampling, else
        ``n_best``."""
        return self.num_samples if self.sampling else self.n_best
