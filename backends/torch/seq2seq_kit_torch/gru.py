"""GRU layers for the PyTorch backend: building one, running it, and mapping its parameters
to and from the canonical layout of :mod:`seq2seq_kit.weights`.

Same interface as :mod:`.lstm`; the state is ``(h,)``. ``nn.GRU`` computes the canonical
cell (reset gate applied after the recurrent matmul, one input and one recurrent bias), but
orders its gate blocks ``r, z, n`` where the canonical order is ``z, r, n``. One direction
of one layer (``{sfx}`` is ``_l0`` or ``_l0_reverse``; ``swap`` exchanges the first two of
the three gate blocks, and is its own inverse)::

    kernel            = swap(weight_ih{sfx}).T
    recurrent_kernel  = swap(weight_hh{sfx}).T
    bias              = [swap(bias_ih{sfx}), swap(bias_hh{sfx})]      [2, 3H]

Both biases are trained.
"""

from __future__ import annotations

import torch
from torch import nn

#: Tensors in the recurrent state: ``(h,)``.
NUM_STATES = 1


def layer(input_size: int, hidden_size: int, bidirectional: bool) -> nn.GRU:
    """One batch-first GRU layer (both directions when ``bidirectional``)."""
    return nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)


def run(rnn: nn.GRU, inputs, state: tuple[torch.Tensor] | None):
    """``rnn`` over ``inputs`` (a tensor or a ``PackedSequence``) from ``state`` (None:
    zero) -> ``(outputs, (h,))``."""
    outputs, h = rnn(inputs, None if state is None else state[0])
    return outputs, (h,)


def swap(x: torch.Tensor) -> torch.Tensor:
    """Exchange the first two of the three gate blocks along dim 0: ``r, z, n`` <->
    ``z, r, n``."""
    r, z, n = x.chunk(3)
    return torch.cat([z, r, n])


def to_canonical(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weight_ih, weight_hh, bias_ih, bias_hh`` of one direction (parameters, gradients or
    Adam moments alike) -> canonical ``kernel, recurrent_kernel, bias``."""
    return {
        "kernel": swap(params["weight_ih"]).T,
        "recurrent_kernel": swap(params["weight_hh"]).T,
        "bias": torch.stack([swap(params["bias_ih"]), swap(params["bias_hh"])]),
    }


def from_canonical(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_canonical`."""
    return {
        "weight_ih": swap(weights["kernel"].T),
        "weight_hh": swap(weights["recurrent_kernel"].T),
        "bias_ih": swap(weights["bias"][0]),
        "bias_hh": swap(weights["bias"][1]),
    }
