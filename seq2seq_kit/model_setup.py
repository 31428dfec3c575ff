"""What a config asks to build, checked before anything is allocated: the model's spec,
the optimizer's, and whether the model fits in this machine's memory."""

from __future__ import annotations

import math

from .architectures import frozen_weights, spec_for
from .config import Config
from .errors import ConfigError, OutOfMemory, option
from .runtime import machine_memory
from .spec import OptimizerSpec, Spec, model_sizes
from .weights import weight_shapes


def model_spec(cfg: Config, src_vocab_size: int, tgt_vocab_size: int) -> Spec:
    """The spec ``cfg.model`` describes (its architecture's: a
    :class:`~seq2seq_kit.spec.ModelSpec` for an RNN, a
    :class:`~seq2seq_kit.spec.TransformerSpec` for a Transformer) for vocabularies of these
    sizes.

    Raises:
        ConfigError: a value the spec refuses (e.g. ``share_embeddings`` with vocabularies
            of different sizes).
    """
    try:
        return spec_for(cfg.model, src_vocab_size, tgt_vocab_size)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


def optimizer_spec(cfg: Config, spec: Spec | None = None) -> OptimizerSpec:
    """Adam, clipping, label smoothing and the moving average of the weights as
    ``cfg.train`` sets them; with the ``spec`` trained, the weights it keeps fixed
    (:func:`frozen_weights`: ``train.freeze`` and a position ``"table"``).

    Raises:
        ConfigError: a ``train.freeze`` group naming no weight of ``spec``.
    """
    train = cfg.train
    try:
        frozen = () if spec is None else frozen_weights(spec, train.freeze)
    except ValueError as exc:
        raise ConfigError(f"{option('train.freeze', train.freeze)}: {exc}") from None
    return OptimizerSpec(
        learning_rate=train.learning_rate,
        beta1=train.adam_beta1,
        beta2=train.adam_beta2,
        epsilon=train.adam_epsilon,
        clip_norm=train.clip_norm,
        label_smoothing=train.label_smoothing,
        frozen=frozen,
        ema_decay=train.ema_decay,
    )


def check_model_fits(spec: Spec, copies: int) -> None:
    """Refuse, before anything is allocated, a model whose float32 weights, ``copies``
    times, exceed this machine's memory (:func:`~seq2seq_kit.runtime.machine_memory`):
    training holds at least three on the host, the weights and Adam's two moments, which
    every checkpoint saves, whatever device trains.

    Raises:
        OutOfMemory: naming the model's size settings (:func:`model_sizes`).
    """
    weights = sum(math.prod(shape) for shape in weight_shapes(spec).values())
    need, have = 4 * weights * copies, machine_memory()
    if have is not None and need > have:
        held = f" ({copies} float32 copies: weights and Adam's moments)" if copies > 1 else ""
        raise OutOfMemory(
            model_sizes(spec),
            f"{weights:,} weights need {need / 2**30:.1f} GiB{held} and this machine has "
            f"{have / 2**30:.1f} GiB",
        )
