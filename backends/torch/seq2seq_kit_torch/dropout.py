"""Inverted dropout with masks from a ``torch.Generator`` the model owns, shared by the RNN
and the Transformer networks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014) in training mode, with masks drawn from
    ``generator`` rather than torch's global one, so that re-seeding it fixes them all (the
    forward pass draws them in a fixed order). Accepts a ``PackedSequence`` (the mask covers
    its real positions). A no-op in eval mode.

    Attributes:
        rate: probability of zeroing an element, in [0, 1).
        generator: where every mask comes from.
    """

    def __init__(self, rate: float, generator: torch.Generator):
        super().__init__()
        self.rate = rate
        self.generator = generator

    def forward(self, x):
        if not self.training:
            return x
        if isinstance(x, PackedSequence):
            return x._replace(data=self(x.data))
        # Uniforms compared to the rate: twice as fast as bernoulli_ on the CPU.
        draws = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return x * (draws >= self.rate).to(x.dtype).div_(1.0 - self.rate)


def optional(rate: float, generator: torch.Generator) -> Dropout | None:
    """A :class:`Dropout` of ``rate``, or None for rate 0 (so that sites cost nothing)."""
    return Dropout(rate, generator) if rate > 0.0 else None
