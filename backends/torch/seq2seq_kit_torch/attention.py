"""Global attention (Luong et al. 2015) as an ``nn.Module``, with the formulas of
:mod:`seq2seq_kit.weights`. For queries ``h_t`` (the top decoder layer's outputs) and memory
``m_s`` (the top encoder layer's outputs)::

    "dot":      score(t, s) = h_t . m_s
    "general":  score(t, s) = (h_t @ kernel) . m_s
    "bahdanau": score(t, s) = v . tanh(h_t @ query_kernel + m_s @ memory_kernel)
    a_t = softmax over s < length of score(t, s)      (0 at s >= length)
    c_t = sum_s a_t,s m_s                              (0 for an empty source)
    h~_t = tanh([c_t, h_t] @ output_kernel)

Parameters (OpenNMT's names) and the canonical ``decoder.attention.*`` weights::

    kernel          = linear_in.weight.T          ("general")
    query_kernel    = linear_query.weight.T       ("bahdanau")
    memory_kernel   = linear_context.weight.T     ("bahdanau")
    v               = v                           ("bahdanau")
    output_kernel   = linear_out.weight.T

Tensors are batch-major: queries ``[B, T, H]``, memory ``[B, S, H]``, weights ``[B, T, S]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Memory(NamedTuple):
    """What the decoder attends to, computed once per source batch (part of the decoder
    state).

    Attributes:
        values: ``[B, S, H]`` the memory ``m_s``.
        keys: ``[B, S, H]`` ``m_s @ memory_kernel`` for "bahdanau" (the query-independent
            half of the score, computed once), else None.
        mask: bool ``[B, 1, S]``, True at real source positions.
    """

    values: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor

    def take(self, index: torch.Tensor) -> Memory:
        """Rows ``index`` of every tensor, as a new memory."""
        return Memory(*(None if t is None else t.index_select(0, index) for t in self))


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``[B, T, S]`` scores over the positions where ``mask`` (``[B, 1, S]``) is
    True, exactly 0 elsewhere; a row without any True position is all 0 (and passes no
    gradient)."""
    # An empty row keeps its finite scores (no all -inf softmax), then is zeroed.
    keep = mask | ~mask.any(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    return weights.masked_fill(~mask, 0.0)


class Attention(nn.Module):
    """Scores ``"dot"``, ``"general"`` or ``"bahdanau"``; see the module docstring."""

    def __init__(self, kind: str, hidden_size: int):
        super().__init__()
        if kind not in ("dot", "general", "bahdanau"):
            raise ValueError(f"unknown attention {kind!r}")
        self.kind = kind
        if kind == "general":
            self.linear_in = nn.Linear(hidden_size, hidden_size, bias=False)
        elif kind == "bahdanau":
            self.linear_query = nn.Linear(hidden_size, hidden_size, bias=False)
            self.linear_context = nn.Linear(hidden_size, hidden_size, bias=False)
            self.v = nn.Parameter(torch.zeros(hidden_size))
        self.linear_out = nn.Linear(2 * hidden_size, hidden_size, bias=False)

    def memory(self, values: torch.Tensor, lengths: torch.Tensor) -> Memory:
        """The :class:`Memory` of ``[B, S, H]`` values for int64 ``[B]`` source lengths."""
        positions = torch.arange(values.shape[1], device=values.device)
        mask = (positions[None, :] < lengths[:, None].to(values.device))[:, None, :]
        keys = self.linear_context(values) if self.kind == "bahdanau" else None
        return Memory(values, keys, mask)

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, H]`` queries -> (``h~`` ``[B, T, H]``, weights ``[B, T, S]``)."""
        values = memory.values
        if self.kind == "dot":
            scores = query @ values.mT
        elif self.kind == "general":
            scores = self.linear_in(query) @ values.mT
        else:
            hidden = torch.tanh(self.linear_query(query)[:, :, None] + memory.keys[:, None])
            scores = hidden @ self.v
        weights = masked_softmax(scores, memory.mask)
        context = weights @ values
        return torch.tanh(self.linear_out(torch.cat([context, query], dim=-1))), weights
