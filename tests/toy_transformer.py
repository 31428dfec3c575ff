"""A stand-in backend that builds a :class:`~seq2seq_kit.spec.TransformerSpec`, so the core's
handling of the architecture choice (config, training's length filter, checkpoints,
decoding caps, attention plots) is tested without a real Transformer.

It learns nothing: every step predicts the same distribution, and decoding never ends a
hypothesis, so that it runs to the cap. It keeps canonical weights (so checkpoints check them) and
records the widths it is handed. It is built through :meth:`Backend.create`, so the core's
input checks, which refuse any source or target wider than ``max_positions`` and any step
at or past it, apply to everything that reaches it.
"""

from __future__ import annotations

import numpy as np
import pytest

from seq2seq_kit.backend import Backend
from seq2seq_kit.plugins import registry
from seq2seq_kit.vocab import EOS
from seq2seq_kit.weights import initial_weights

NAME = "toy-transformer"


class ToyTransformer:
    def __init__(self, spec, *, seed, optimizer):
        self.spec, self.optimizer, self.seed = spec, optimizer, seed
        self.weights = initial_weights(spec, seed)
        self.learning_rate = optimizer.learning_rate
        self.updates = 0
        self.source_widths: list[int] = []
        self.target_widths: list[int] = []
        # teacher-forced: EOS improbable but finite (the loss stays finite); decoding: EOS
        # impossible, so that greedy and beam search both run to the cap
        logits = np.zeros(spec.tgt_vocab_size, dtype=np.float64)
        logits[EOS] = -30.0
        self.next = (logits - np.log(np.exp(logits).sum())).astype(np.float32)
        self.decoding = self.next.copy()
        self.decoding[EOS] = -np.inf

    # training
    def train_step(self, batches):
        self.updates += 1
        return float(np.mean([self.loss(b) for b in batches]))

    def loss(self, batch):
        self.source_widths.append(batch.src_ids.shape[1])
        self.target_widths.append(batch.tgt_in.shape[1])
        return float(-self.next[batch.tgt_out].mean())

    def gradients(self, batch):
        return {k: np.zeros_like(v) for k, v in self.weights.items()}

    def log_probs(self, batch):
        self.source_widths.append(batch.src_ids.shape[1])
        self.target_widths.append(batch.tgt_in.shape[1])
        return np.broadcast_to(self.next, (*batch.tgt_in.shape, len(self.next))).copy()

    # decoding: a state is (source lengths, source width, position); never mutated
    def encode(self, src_ids, src_lengths):
        self.source_widths.append(src_ids.shape[1])
        return (np.array(src_lengths), src_ids.shape[1], 0)

    def step(self, prev_ids, state):
        lengths, width, position = state
        return np.tile(self.decoding, (len(prev_ids), 1)), (lengths, width, position + 1)

    def reorder(self, state, index):
        lengths, width, position = state
        return (lengths[index], width, position)

    def attention(self, state):
        lengths, width, position = state
        if position == 0:
            return None
        visible = np.arange(width)[None, :] < lengths[:, None]
        return (visible / np.maximum(lengths[:, None], 1)).astype(np.float32)

    # weights and optimizer state
    def set_learning_rate(self, learning_rate):
        self.learning_rate = learning_rate

    def optimizer_state(self):
        return {
            "step": np.array(self.updates, dtype=np.int64),
            "learning_rate": np.array(self.learning_rate, dtype=np.float64),
            "seed": np.array(self.seed, dtype=np.int64),
        }

    def set_optimizer_state(self, state):
        self.updates = int(state["step"])
        self.learning_rate = float(state["learning_rate"])

    def get_weights(self):
        return {k: v.copy() for k, v in self.weights.items()}

    def set_weights(self, weights):
        self.weights = {k: np.asarray(v, dtype=np.float32).copy() for k, v in weights.items()}


BACKEND = Backend(
    name=NAME,
    version="0",
    capabilities=frozenset({"train", "beam", "dropout", "resume", "transformer"}),
    build=ToyTransformer,
)


def register(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the stand-in as backend ``toy-transformer`` until the test ends; its name."""
    monkeypatch.setitem(registry().backends, NAME, BACKEND)
    return NAME
