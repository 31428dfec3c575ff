"""The training objective: the mask-weighted sum of label-smoothed cross-entropies, with its
gradient written out.

For logits ``z`` [K, V], targets ``y`` [K], weights ``w`` [K] (the target mask at K positions)
and smoothing ``eps`` (Szegedy et al. 2016, section 7; :class:`seq2seq_kit.spec.OptimizerSpec`)::

    log p = log_softmax(z)
    loss  = sum_k w_k * ((1 - eps) * -log p[k, y_k] + eps * mean_v(-log p[k, v]))
    d loss / d z[k, v] = w_k * (p[k, v] - eps / V - (1 - eps) * [v == y_k])

``F.cross_entropy(label_smoothing=eps)`` gives the same values, but its backward builds the
gradient of each term in its own [K, V] buffer and adds them; with a large vocabulary those
passes were a tenth of a Transformer training step. Here the backward is one exponential
of the saved log-probabilities, scaled in place, and a scatter at the targets.
"""

from __future__ import annotations

import torch


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, weights, epsilon):
        log_probs = torch.log_softmax(logits, dim=-1)
        losses = log_probs.gather(1, targets[:, None])[:, 0].mul(-(1.0 - epsilon))
        if epsilon:
            losses = losses.sub_(log_probs.mean(dim=-1), alpha=epsilon)
        ctx.save_for_backward(log_probs, targets, weights)
        ctx.epsilon = epsilon
        return torch.dot(losses, weights)

    @staticmethod
    def backward(ctx, grad):
        log_probs, targets, weights = ctx.saved_tensors
        epsilon = ctx.epsilon
        scale = weights * grad
        out = log_probs.exp()
        if epsilon:
            out.sub_(epsilon / log_probs.shape[-1])
        out.mul_(scale[:, None])
        out.scatter_add_(1, targets[:, None], scale.mul(-(1.0 - epsilon))[:, None])
        return out, None, None, None


def smoothed_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """The scalar ``sum_k weights[k] * loss_k`` of the module docstring, differentiable in
    ``logits`` ([K, V], float32 or float64); ``targets`` int64 [K]; ``weights`` [K] in the
    logits' dtype; ``epsilon`` in [0, 1)."""
    return _SmoothedCrossEntropy.apply(logits, targets, weights, float(epsilon))
