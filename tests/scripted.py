"""A model whose next-token log-probabilities are a fixed function of (source, prefix), for
testing the decoder loop's search logic independently of any trained network."""

from __future__ import annotations

import zlib

import numpy as np


class ScriptedModel:
    """``table`` maps a target prefix (tuple of ids after BOS) to next-token probabilities;
    prefixes not in it get pseudo-random log-probabilities seeded by (source, prefix)."""

    def __init__(self, vocab_size: int, table=None, eos_bonus: float = 0.0):
        self.vocab_size = vocab_size
        self.table = table or {}
        self.eos_bonus = eos_bonus
        self.calls = 0

    def encode(self, src_ids, src_lengths):
        return [(tuple(row[:n].tolist()), ()) for row, n in zip(src_ids, src_lengths, strict=True)]

    def next_log_probs(self, source, prefix):
        if prefix in self.table:
            probs = np.asarray(self.table[prefix], dtype=np.float64)
            with np.errstate(divide="ignore"):
                return np.log(probs / probs.sum()).astype(np.float32)
        seed = zlib.crc32(repr((source, prefix)).encode())
        logits = np.random.default_rng(seed).normal(size=self.vocab_size)
        logits[2] += self.eos_bonus
        return (logits - np.log(np.exp(logits).sum())).astype(np.float32)

    def step(self, prev_ids, state):
        self.calls += 1
        new_state, out = [], []
        for prev, (source, prefix) in zip(prev_ids, state, strict=True):
            prefix = prefix if prev == 1 and not prefix else prefix
            if prev != 1 or prefix:
                prefix = prefix + (int(prev),)
            new_state.append((source, prefix))
            out.append(self.next_log_probs(source, prefix))
        return np.stack(out), new_state

    def reorder(self, state, index):
        return [state[i] for i in index]
