"""What a backend builds: the model architecture and the optimizer, as plain dataclasses.

A spec holds no tensors and imports no framework; it is saved inside every checkpoint
(``model.json``) so that any backend can rebuild the same model. Each architecture's spec is
derived from its ``[model]`` table in :mod:`seq2seq_kit.architectures`, which also answers
every question whose answer depends on the architecture; the names are re-exported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .architectures import (
    ModelSpec,
    Spec,
    TransformerSpec,
    decoding_cap,
    max_source_tokens,
    max_target_tokens,
    model_sizes,
    spec_from_dict,
)
from .ema import check_decay

__all__ = [
    "ModelSpec",
    "OptimizerSpec",
    "Spec",
    "TransformerSpec",
    "decoding_cap",
    "max_source_tokens",
    "max_target_tokens",
    "model_sizes",
    "spec_from_dict",
]


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam (Kingma & Ba 2015, Algorithm 1, bias-corrected) with global gradient-norm
    clipping (Pascanu et al. 2013): gradients are scaled by ``min(1, clip_norm / ||g||_2)``
    over all parameters together before the update.

    The reference form adds ``epsilon`` to ``sqrt(v_hat)`` (the paper's and PyTorch's);
    Keras adds it before bias correction. Backends may use their framework's Adam: the
    forms differ by far less than training noise, and the suite compares gradients, not
    optimizer trajectories.

    Attributes:
        learning_rate: step size alpha (the seed's Keras Adam default: 0.001).
        beta1, beta2: moment decay rates (paper defaults 0.9, 0.999).
        epsilon: numerical-stability term; 1e-7, Keras' default.
        clip_norm: maximum global L2 norm of the gradient; 0 disables clipping.
        label_smoothing: epsilon of label smoothing (Szegedy et al. 2016, section 7): the
            training objective at each non-pad target position is
            ``(1 - epsilon) * -log p(y) + epsilon * mean_v(-log p(v))`` over all ``V`` ids,
            i.e. cross-entropy against ``(1 - epsilon) * one_hot(y) + epsilon / V``
            (PyTorch's ``CrossEntropyLoss(label_smoothing=)``, Keras' ``label_smoothing``).
            ``train_step``, ``loss`` and ``gradients`` all use it; ``log_probs`` does not.
        frozen: canonical weight names (:mod:`seq2seq_kit.weights`) that ``train_step``
            never changes: they take no update, their Adam moments are left as they are
            (zero from the start), and their gradients count neither in the update nor in
            the global norm that clipping scales by (as ``requires_grad = False`` in
            PyTorch). ``loss``, ``gradients`` and ``log_probs`` are unchanged by it. Needs
            the ``freeze`` capability; :meth:`seq2seq_kit.backend.Backend.create` refuses a
            name the spec's layout lacks. Training fills it from ``[train] freeze`` and the
            weights no run trains (:func:`seq2seq_kit.architectures.frozen_weights`).
        ema_decay: the decay ``d`` of an exponential moving average of the weights that
            ``train_step`` keeps after every update (:mod:`seq2seq_kit.ema` defines it), on
            the backend's device; ``Model.ema_weights`` returns it and the optimizer state
            carries it (``ema/NAME``). 0 (the default): none. Needs the ``ema``
            capability. Training fills it from ``[train] ema_decay``.
    """

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    clip_norm: float = 5.0
    label_smoothing: float = 0.0
    frozen: tuple[str, ...] = ()
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"OptimizerSpec.label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        try:
            object.__setattr__(self, "ema_decay", check_decay(self.ema_decay))
        except ValueError as exc:
            raise ValueError(f"OptimizerSpec.{exc}") from None
        # a lone string would be frozen character by character
        if isinstance(self.frozen, str) or not all(isinstance(n, str) for n in self.frozen):
            raise ValueError(
                f"OptimizerSpec.frozen must be a sequence of weight names, got {self.frozen!r:.80}"
            )
        # a tuple, in a fixed order and without repeats: the spec is hashable and compares
        # equal however the names were listed
        object.__setattr__(self, "frozen", tuple(sorted(set(self.frozen))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
