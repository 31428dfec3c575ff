"""Hook specifications: what a ``seq2seq_kit`` plugin may implement.

A plugin is a module named by an entry point in the ``seq2seq_kit`` group; it implements
any of these functions decorated with ``seq2seq_kit.hookimpl``. Registering must stay cheap:
import no framework at module level (build the model lazily).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("seq2seq_kit")
hookimpl = pluggy.HookimplMarker("seq2seq_kit")


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register backends: call ``register(Backend(...))`` once per backend.

    ``Backend.build`` is called only when a model is built, so the framework is imported
    then, not at registration.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register datasets: call ``register(name, load)`` where ``load(**options)`` returns a
    :class:`seq2seq_kit.data.Dataset`. Options come from the ``[data]`` config table."""


@hookspec
def on_epoch_end(record: dict[str, Any]) -> None:
    """Called by the trainer after each epoch with ``{"epoch", "train_loss", "valid_loss",
    "valid_accuracy", "seconds", ...}`` (loss in nats per target token)."""


@hookspec
def on_train_end(history: list[dict[str, Any]], out_dir: str | None) -> None:
    """Called once training is done with every epoch record and the output directory."""
