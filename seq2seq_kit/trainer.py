"""The training loop: epochs of shuffled batches, per-epoch evaluation, early stopping."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import Model
from .batching import batches
from .config import TrainConfig

EVAL_BATCH_SIZE = 256

Ids = Sequence[Sequence[int]]


def evaluate(model: Model, sources: Ids, targets: Ids) -> tuple[float, float]:
    """Teacher-forced mean loss (nats per target token, EOS included) and token accuracy
    (argmax equals the target, over non-pad positions) of ``model`` on the pairs."""
    loss_sum = correct = count = 0.0
    for batch in batches(sources, targets, EVAL_BATCH_SIZE):
        log_probs = model.log_probs(batch)
        mask = batch.tgt_mask.astype(bool)
        gold = np.take_along_axis(log_probs, batch.tgt_out[..., None], axis=2)[..., 0]
        loss_sum -= float(gold[mask].sum())
        correct += float((log_probs.argmax(axis=2) == batch.tgt_out)[mask].sum())
        count += float(mask.sum())
    return loss_sum / max(count, 1.0), correct / max(count, 1.0)


def fit(
    model: Model,
    train: tuple[Ids, Ids],
    valid: tuple[Ids, Ids] | None,
    config: TrainConfig,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place for ``config.epochs`` epochs; returns one record per epoch.

    Each record has ``epoch``, ``train_loss`` (token-weighted mean over the epoch's steps,
    before each update), ``valid_loss`` and ``valid_accuracy`` (on the validation pairs,
    or on the training pairs when there are none, flagged by ``evaluated_on``) and
    ``seconds``. With ``config.patience`` > 0 and validation pairs, training stops after
    that many epochs without a lower validation loss, and the best weights are restored.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    eval_src, eval_tgt = valid if valid and len(valid[0]) else train
    evaluated_on = "valid" if valid and len(valid[0]) else "train"
    history: list[dict[str, Any]] = []
    best_loss, best_weights, bad_epochs = np.inf, None, 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="train",
        unit="epoch",
        disable=None if config.progress else True,
    )
    for epoch in bar:
        start = time.perf_counter()
        loss_sum = tokens = 0.0
        for batch in batches(*train, config.batch_size, rng=rng, bucket=config.bucket):
            n = batch.num_target_tokens
            loss_sum += model.train_step(batch) * n
            tokens += n
        valid_loss, valid_acc = evaluate(model, eval_src, eval_tgt)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(tokens, 1.0),
            "valid_loss": valid_loss,
            "valid_accuracy": valid_acc,
            "evaluated_on": evaluated_on,
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        bar.set_postfix(
            loss=f"{record['train_loss']:.4f}",
            val=f"{valid_loss:.4f}",
            acc=f"{valid_acc:.3f}",
            refresh=False,
        )
        if on_epoch_end is not None:
            on_epoch_end(record)
        if config.patience and evaluated_on == "valid":
            if valid_loss < best_loss:
                best_loss, best_weights, bad_epochs = valid_loss, model.get_weights(), 0
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    record["early_stopped"] = True
                    break
    bar.close()
    if best_weights is not None:
        model.set_weights(best_weights)
    return history
