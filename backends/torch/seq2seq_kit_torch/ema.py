"""The moving average of the weights (``OptimizerSpec.ema_decay``) as the core defines it
(:mod:`seq2seq_kit.ema`), kept per torch parameter on the parameters' device: the canonical
layout is a linear map of the parameters (:mod:`.layout`), so averaging the parameters
averages the canonical weights."""

from __future__ import annotations

import torch
from torch import nn


class Ema:
    """Shadow tensors of ``params`` (by parameter name), updated by :meth:`update` after
    every optimizer update with the fused ``torch._foreach_mul_`` / ``_foreach_add_``
    (``ema * d + (1 - d) * theta``, fairseq's ``mul_`` then ``add_(alpha=)``).

    A parameter training never changes (``requires_grad = False``, like the LSTM's zero
    ``bias_hh``, or wholly frozen) is copied into its shadow, not averaged; one packing
    frozen and trained weights (``masks``: True on the frozen elements) has its frozen
    elements copied after the average: frozen weights stay bit-identical to their average.

    Attributes:
        decay: ``d`` (0: nothing is kept).
        shadows: parameter name -> its average (none when ``decay`` is 0).
    """

    def __init__(
        self,
        params: dict[str, nn.Parameter],
        decay: float,
        masks: dict[nn.Parameter, torch.Tensor],
    ):
        self.decay = decay
        self._params = params if decay else {}
        self.shadows = {name: torch.zeros_like(p) for name, p in self._params.items()}
        self._averaged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._copied: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._partial: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for name, param in self._params.items():
            pair = (self.shadows[name], param)
            mask = masks.get(param)
            if not param.requires_grad or (mask is not None and bool(mask.all())):
                self._copied.append(pair)
                continue
            self._averaged.append(pair)
            if mask is not None:
                self._partial.append((*pair, mask))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Average in the parameters that update ``step`` (from 1) left."""
        if not self.decay:
            return
        if step == 1:
            for shadow, param in self._averaged:
                shadow.copy_(param)
        elif self._averaged:
            shadows, params = (list(t) for t in zip(*self._averaged, strict=True))
            torch._foreach_mul_(shadows, self.decay)
            torch._foreach_add_(shadows, params, alpha=1.0 - self.decay)
        for shadow, param in self._copied:
            shadow.copy_(param)
        for shadow, param, mask in self._partial:
            # torch.where, not shadow[mask] = ...: boolean indexing waits for the device
            shadow.copy_(torch.where(mask, param, shadow))

    @torch.no_grad()
    def load(self, shadows: dict[str, torch.Tensor]) -> None:
        """Replace every shadow by ``shadows`` (parameter name -> tensor, any device)."""
        for name, shadow in self.shadows.items():
            shadow.copy_(shadows[name])
