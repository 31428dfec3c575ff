"""Scheduled sampling: decoder inputs partly replaced by the model's own predictions, so
that training sees some of the mistakes decoding will make."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..backend import Model
from ..batch import Batch


def scheduled_sampling(model: Model, batch: Batch, ratio: float, rng: np.random.Generator) -> Batch:
    """Replace each decoder input after BOS, with probability ``1 - ratio``, by the model's
    own greedy prediction for that position (the teacher-forcing ratio; Bengio et al. 2015,
    computed from one teacher-forced pass as in Duckworth et al. 2019, so every backend
    gets it through ``log_probs`` alone)."""
    predicted = model.log_probs(batch).argmax(axis=2).astype(np.int32)
    swap = rng.random(batch.tgt_in.shape) >= ratio
    swap[:, 0] = False  # BOS stays
    swap &= batch.tgt_mask.astype(bool)
    tgt_in = batch.tgt_in.copy()
    # position t reads the prediction made at t - 1
    tgt_in[:, 1:][swap[:, 1:]] = predicted[:, :-1][swap[:, 1:]]
    return replace(batch, tgt_in=tgt_in)
