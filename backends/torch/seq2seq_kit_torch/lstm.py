"""LSTM layers for the PyTorch backend: building one, running it, and mapping its parameters
to and from the canonical layout of :mod:`seq2seq_kit.weights`.

This module and :mod:`.gru` share one interface, so that the model dispatches on
``spec.cell``: ``NUM_STATES``, :func:`layer`, :func:`run`, :func:`to_canonical` and
:func:`from_canonical`. A state is a tuple of ``[directions, B, H]`` tensors: ``(h, c)``
here, ``(h,)`` for the GRU.

One direction of one layer (``{sfx}`` is ``_l0`` or ``_l0_reverse``)::

    kernel            = weight_ih{sfx}.T
    recurrent_kernel  = weight_hh{sfx}.T
    bias              = bias_ih{sfx} + bias_hh{sfx}

The gate order ``i, f, g, o`` is PyTorch's too. ``bias_hh`` is held at zero and frozen
(``requires_grad=False``): the canonical LSTM has one bias per layer, and training two
copies would give it two Adam updates per step and count its gradient twice in the clipping
norm.
"""

from __future__ import annotations

import torch
from torch import nn

#: Tensors in the recurrent state: ``(h, c)``.
NUM_STATES = 2

State = tuple[torch.Tensor, torch.Tensor]


def layer(input_size: int, hidden_size: int, bidirectional: bool) -> nn.LSTM:
    """One batch-first LSTM layer (both directions when ``bidirectional``), ``bias_hh``
    zero and frozen."""
    rnn = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_hh"):
                param.zero_()
                param.requires_grad_(False)
    return rnn


def run(rnn: nn.LSTM, inputs, state: State | None):
    """``rnn`` over ``inputs`` (a tensor or a ``PackedSequence``) from ``state`` (None:
    zero) -> ``(outputs, (h, c))``."""
    return rnn(inputs, state)


def to_canonical(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weight_ih, weight_hh, bias_ih, bias_hh`` of one direction (parameters, gradients or
    Adam moments alike) -> canonical ``kernel, recurrent_kernel, bias`` (views or new)."""
    return {
        "kernel": params["weight_ih"].T,
        "recurrent_kernel": params["weight_hh"].T,
        "bias": params["bias_ih"] + params["bias_hh"],
    }


def from_canonical(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_canonical`; the whole bias goes to ``bias_ih``."""
    return {
        "weight_ih": weights["kernel"].T,
        "weight_hh": weights["recurrent_kernel"].T,
        "bias_ih": weights["bias"],
        "bias_hh": torch.zeros_like(weights["bias"]),
    }
