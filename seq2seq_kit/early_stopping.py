"""Early stopping and best tracking: what each validation's score decides (the best
score and weights, patience, the learning rate cut on a plateau)."""

from __future__ import annotations

from .backend import Model
from .config import TrainConfig
from .trainer_state import TrainerState


def track_best(
    model: Model, state: TrainerState, config: TrainConfig, score: float, has_valid: bool
) -> bool:
    """Update best weights, early stopping and the plateau schedule from this epoch's
    ``score`` (lower is better); True means stop. Without validation pairs (``has_valid``
    false) the score, of the training pairs, is recorded and decides nothing."""
    if not has_valid:
        state.best_score, state.best_weights = score, None
        return False
    if score < state.best_score:
        state.best_score, state.best_weights = score, model.get_weights()
        state.bad_epochs = state.plateau_epochs = 0
        return False
    state.bad_epochs += 1
    state.plateau_epochs += 1
    if config.lr_patience and state.plateau_epochs >= config.lr_patience:
        lowered = max(state.learning_rate * config.lr_factor, config.min_learning_rate)
        if lowered < state.learning_rate:
            state.learning_rate = lowered
            model.set_learning_rate(lowered)
        state.plateau_epochs = 0
    return bool(config.patience) and state.bad_epochs >= config.patience
