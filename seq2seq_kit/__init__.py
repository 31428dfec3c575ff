"""seq2seq-kit: a pluggable, framework-agnostic sequence-to-sequence toolkit.

Importing this package imports no deep-learning framework; backends load theirs when a
model is first built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl, hookspec
from .version import __version__

__all__ = [
    "Translator",
    "average",
    "hookimpl",
    "hookspec",
    "load",
    "load_ensemble",
    "train",
    "__version__",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .api import Ensemble, Translator


def train(*args: Any, **kwargs: Any) -> Translator:
    """Train a model; see :func:`seq2seq_kit.api.train`."""
    from .api import train as _train

    return _train(*args, **kwargs)


def load(path: str, backend: str | None = None, *, quantization: str | None = None) -> Translator:
    """Load a trained model directory; see :func:`seq2seq_kit.api.load`."""
    from .api import load as _load

    return _load(path, backend=backend, quantization=quantization)


def load_ensemble(
    paths: Sequence[str],
    weights: Sequence[float] | None = None,
    backends: str | Sequence[str | None] | None = None,
    *,
    quantization: str | None = None,
) -> Ensemble:
    """Load model directories as one ensemble; see :func:`seq2seq_kit.api.load_ensemble`."""
    from .api import load_ensemble as _load_ensemble

    return _load_ensemble(paths, weights=weights, backends=backends, quantization=quantization)


def average(*args: Any, **kwargs: Any) -> Path:
    """Average checkpoints into a model directory; see :func:`seq2seq_kit.api.average`."""
    from .api import average as _average

    return _average(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # Translator is imported on first use, so that importing the package stays light
    if name == "Translator":
        from .api import Translator

        return Translator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
