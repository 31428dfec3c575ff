"""``[train]``: the optimizer, the schedule, when to validate, save and stop, and where to run."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from ..architectures import FreezeGroup
from ..runtime import DEVICE_PATTERN, MAX_THREADS
from ..section import MAX_COUNT, MAX_SEED, Section

#: The corpus metrics validation may decode and score (``seq2seq_kit.metrics.METRICS``,
#: which computes them; a test holds the two lists equal): chrF, BLEU and TER 0..100
#: (sacrebleu), exact match, CER and token error rate 0..1. Lower is better for TER, CER
#: and token error rate, higher for the others.
DecodedMetric = Literal["chrf", "bleu", "ter", "exact_match", "cer", "token_error_rate"]
#: What ``early_stopping_metric`` may name: the teacher-forced figures, or a decoded metric.
SelectionMetric = Literal[
    "loss", "accuracy", "chrf", "bleu", "ter", "exact_match", "cer", "token_error_rate"
]


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
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="initial weights, shuffling, dropout and the split"
    )
    patience: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="early stopping after N validations not better (epochs, unless "
        "valid_every); 0: off",
    )
    early_stopping_metric: SelectionMetric = Field(
        "loss",
        description="validation figure that picks the best weights and drives patience and "
        "lr_patience: loss (lower is better), teacher-forced token accuracy (higher), or a "
        "decoded metric of valid_metrics (higher is better for chrf, bleu, exact_match; lower "
        "for ter, cer, token_error_rate)",
    )
    # A list (TOML has no sets), kept in DecodedMetric's order without repeats, as freeze.
    valid_metrics: list[DecodedMetric] = Field(
        [],
        max_length=len(get_args(DecodedMetric)),
        description="decoded validation: at each validation, decode the first "
        "valid_decode_limit distinct validation sources (greedy, or beam valid_beam; "
        "decode.max_length, length_penalty and batch_size apply) and score them against all "
        "their references with these metrics: chrf, bleu, ter (sacrebleu, percent; TER "
        "may pass 100), exact_match, cer, token_error_rate (fractions; the error rates "
        "may pass 1); each is logged, recorded as valid_NAME "
        "and plotted; []: no decoding",
    )
    # 1,000 by default, an estimate from measured figures (a benchmark is to check it): the
    # Tatoeba Transformer example (examples/tatoeba-eng-fra-transformer.toml) validates every
    # 500 of the ~2,000 updates of its 20 minutes, at its 1-2 epoch ends and at its stop: ~6
    # validations. Trained, it decoded 2,000 test sources greedily in about 10 s at one
    # thread, process start included (benchmarks/ACCURACY.md): ~5 s for 1,000, ~30 s in all,
    # 2.5% of the 20 minutes. An early model whose every output runs to its 60-token cap
    # decodes ~35 sources/s (15.5/s to a 131-token cap in the Transformer throughput table):
    # ~30 s for 1,000, and even 6 such validations (180 s) stay within 15%. Beam 5 cost 4
    # times greedy there: with valid_beam 5, a quarter of the sources keeps that bound.
    valid_decode_limit: int = Field(
        1000,
        ge=1,
        le=MAX_COUNT,
        description="decoded validation (valid_metrics) decodes at most this many distinct "
        "validation sources, the first ones, so that its cost stays bounded",
    )
    valid_beam: int = Field(
        1,
        ge=1,
        le=1024,
        description="beam size of decoded validation (valid_metrics); 1: greedy. Beam search "
        "needs the backend's beam capability and costs more (beam 5: about 4 times greedy)",
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
    init_from: str | None = Field(
        None,
        min_length=1,
        description="fine-tune: a model directory whose architecture, tokenizers, "
        "vocabularies and weights the run starts from (the optimizer and the learning-rate "
        "schedule start afresh; pieces of the data its vocabulary lacks follow "
        "decode.unknown); its path and weights' SHA-256 are recorded in model.json",
    )
    # A list (TOML has no sets), kept in FreezeGroup's order without repeats: the same
    # groups compare equal on resume however they were listed.
    freeze: list[FreezeGroup] = Field(
        [],
        max_length=len(get_args(FreezeGroup)),
        description="weight groups training never changes: encoder, decoder (the output "
        "projection included), embeddings, positions, output (the output projection); "
        "each must name a weight of the model. An imported position table (model.positions "
        "= table) is never trained whatever this says",
    )
    ema_decay: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="decay d of an exponential moving average of the weights, taken after "
        "every update (ema = d * ema + (1 - d) * weights, from the first update's weights; "
        "fairseq's --ema-decay): validation scores the average, and the best average is the "
        "model saved, while training goes on from the weights; typical 0.999 or 0.9999; "
        "0: off",
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
    keep_last: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="keep the checkpoints of the last N validations in the model directory's "
        "checkpoints/update-NNNNNNNN/, each a full model directory (translate, evaluate, "
        "average, --resume), listed in model.json; 0: none",
    )
    keep_best: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="keep the checkpoints of the N best validations by early_stopping_metric "
        "(with keep_last: the union of both); needs validation pairs; 0: none",
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

    @field_validator("freeze")
    @classmethod
    def _groups_in_order(cls, groups: list[str]) -> list[str]:
        return [group for group in get_args(FreezeGroup) if group in groups]

    @field_validator("valid_metrics")
    @classmethod
    def _metrics_in_order(cls, metrics: list[str]) -> list[str]:
        return [metric for metric in get_args(DecodedMetric) if metric in metrics]

    @model_validator(mode="after")
    def _selection_is_decoded(self) -> TrainConfig:
        # Refused rather than added: a metric the user did not list would be decoded and
        # recorded without being asked for, and valid_metrics would not say what ran.
        metric = self.early_stopping_metric
        if metric in get_args(DecodedMetric) and metric not in self.valid_metrics:
            raise ValueError(
                f"early_stopping_metric = {metric!r} is a decoded metric, but valid_metrics "
                f"= {self.valid_metrics!r} does not compute it: add {metric!r} to "
                f"valid_metrics (--valid-metrics {','.join([*self.valid_metrics, metric])})"
            )
        return self

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
