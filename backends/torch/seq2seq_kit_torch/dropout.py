"""Inverted dropout with masks from a ``torch.Generator`` the model owns, shared by the RNN
and the Transformer networks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

#: Masks are drawn as 16-bit integers, four from each 64-bit draw of the generator (a
#: float draw per element costs four times as much on the CPU); the rate is thereby
#: rounded to a multiple of 2**-16.
_LEVELS = 1 << 16


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014) in training mode, with masks drawn from
    ``generator`` rather than torch's global one, so that re-seeding it fixes them all (the
    forward pass draws them in a fixed order). Accepts a ``PackedSequence`` (the mask covers
    its real positions). A no-op in eval mode.

    An element is kept when a uniform 16-bit draw is at least ``round(rate * 2**16)``, and
    kept elements are scaled by the inverse of that probability, so the expected output is
    the input exactly.

    Attributes:
        rate: probability of zeroing an element, in [0, 1).
        generator: where every mask comes from.
    """

    def __init__(self, rate: float, generator: torch.Generator):
        super().__init__()
        self.rate = rate
        self.generator = generator
        dropped = round(rate * _LEVELS)
        # Compared as signed int16: the draw u in [0, 2**16) is stored as u - 2**15.
        self.threshold = dropped - _LEVELS // 2
        self.scale = _LEVELS / (_LEVELS - dropped)

    def forward(self, x):
        if not self.training:
            return x
        if isinstance(x, PackedSequence):
            return x._replace(data=self(x.data))
        count = x.numel()
        # randint over the whole int64 range: every 16-bit quarter is uniform.
        words = torch.randint(
            -(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, generator=self.generator
        )
        # Drawn on the CPU generator whatever the device: the same masks everywhere.
        draws = words.view(torch.int16)[:count].view(x.shape).to(x.device)
        return x * torch.where(draws >= self.threshold, self.scale, 0.0).to(x.dtype)


def optional(rate: float, generator: torch.Generator) -> Dropout | None:
    """A :class:`Dropout` of ``rate``, or None for rate 0 (so that sites cost nothing)."""
    return Dropout(rate, generator) if rate > 0.0 else None
