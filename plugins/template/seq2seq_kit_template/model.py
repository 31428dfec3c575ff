"""The model behind the ``template`` backend.

It starts as a working backend: every method of the contract
(:class:`seq2seq_kit.backend.Model`) hands the work to the NumPy reference model, so the
conformance suite passes from the first run. Replace the methods with your framework's code
one at a time, keeping the suite green; the reference is what the suite compares you with.

Arguments arrive checked: ``Backend.create`` wraps this model in
:class:`seq2seq_kit.validation.CheckedModel`, so ids are C-contiguous int32 inside the
vocabulary, lengths lie in range and masks match them. Do not check them again here.
"""

from __future__ import annotations

import numpy as np

from seq2seq_kit.batching import Batch
from seq2seq_kit.spec import ModelSpec, OptimizerSpec


class TemplateModel:
    """An encoder-decoder in the canonical weight layout (:mod:`seq2seq_kit.weights`).

    Shapes: ``B`` batch, ``S``/``T`` source/target length, ``V`` target vocabulary.
    """

    def __init__(self, spec: ModelSpec, *, seed: int = 0, optimizer: OptimizerSpec | None = None):
        from seq2seq_kit_numpy.model import NumpyModel

        self.spec = spec
        # Replace: build your framework's network from seq2seq_kit.weights.initial_weights.
        self._impl = NumpyModel(spec, seed=seed, optimizer=optimizer)

    # Training: mean cross-entropy (nats) over non-pad target positions; train_step gets
    # a list of batches whose gradients make one update (gradient accumulation).
    def train_step(self, batches: list[Batch]) -> float:
        return self._impl.train_step(batches)

    def loss(self, batch: Batch) -> float:
        return self._impl.loss(batch)

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        return self._impl.gradients(batch)

    def log_probs(self, batch: Batch) -> np.ndarray:
        """float32 [B, T, V], teacher-forced."""
        return self._impl.log_probs(batch)

    # Decoding: the core's greedy and beam search drive these.
    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray):
        return self._impl.encode(src_ids, src_lengths)

    def step(self, prev_ids: np.ndarray, state):
        """int32 [B] -> (float32 [B, V] log-probabilities, new state)."""
        return self._impl.step(prev_ids, state)

    def reorder(self, state, index: np.ndarray):
        return self._impl.reorder(state, index)

    def attention(self, state):
        return self._impl.attention(state)

    # Weights and optimizer, in the canonical layout.
    def get_weights(self) -> dict[str, np.ndarray]:
        return self._impl.get_weights()

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._impl.set_weights(weights)

    def set_learning_rate(self, learning_rate: float) -> None:
        self._impl.set_learning_rate(learning_rate)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self._impl.optimizer_state()

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self._impl.set_optimizer_state(state)
