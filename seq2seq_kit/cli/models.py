"""The ``--model``, ``--backend``, ``--weights`` and ``--quantization`` flags of the
commands that decode (``translate``, ``evaluate``), and the translator they load: one
model, or an ensemble of several (:mod:`seq2seq_kit.ensemble`), each member on the
backend given for it."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..translator import Translator


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="DIR",
        help="model directory; repeat it to decode with an ensemble of the models (their "
        "log-probabilities averaged at every step, weighted by --weights; the first model's "
        "saved [decode] settings are the defaults)",
    )
    p.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="backend to run the model with; with several --model, once for all of them or "
        "once per --model, in the same order (--model A --model B --backend numpy --backend "
        "torch)",
    )
    p.add_argument(
        "--weights",
        type=_weights,
        metavar="W,W",
        help="with several --model: one weight per model, in the same order, separated by "
        "commas (--weights 0.6,0.4; numbers above 0, normalised to sum to 1; default: equal "
        "weights)",
    )
    from .options import _add_quantization

    _add_quantization(
        p,
        "run the model (every model of an ensemble) quantized to this scheme from its "
        "float32 weights (default: float32), with a backend that runs it (ctranslate2: every "
        "scheme its device runs; onnx: int8; others refuse, exit status 2)",
    )


def _weights(text: str) -> list[float]:
    """argparse ``type=`` of ``--weights``: finite numbers above 0, separated by commas
    (as every list flag takes its items: a value of its own, so that TEXT arguments after
    it stay inputs)."""
    values = []
    for number, item in enumerate(text.split(","), start=1):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: weight {number}, {item.strip()!r}, is not a number"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"{text!r}: weight {number}, {item.strip()!r}: a weight must be a finite "
                f"number above 0"
            )
        values.append(value)
    return values


def load_models(args: argparse.Namespace) -> Translator:
    """The translator of the ``--model`` flags: the model, or the ensemble of the models
    (:func:`seq2seq_kit.api.load_ensemble`), each on its ``--backend``.

    Raises:
        ConfigError: ``--backend`` given neither once nor once per ``--model``,
            ``--weights`` with one model or not one per model; before any model is loaded.
        EnsembleError, CapabilityError: models that cannot form an ensemble (as
            :func:`seq2seq_kit.api.ensemble`).
        CheckpointError, BackendError, OutOfMemory: as :func:`seq2seq_kit.api.load`.
    """
    from ..api import load, load_ensemble
    from ..errors import ConfigError

    models, backends, weights = args.model, args.backend or [None], args.weights
    if len(backends) not in (1, len(models)):
        raise ConfigError(
            f"--backend given {len(backends)} times for {len(models)} --model: give it once "
            f"for every model, or once per --model, in the same order"
        )
    if weights is not None and len(models) == 1:
        raise ConfigError(
            "--weights weighs the models of an ensemble: give two or more --model, or leave "
            "--weights out"
        )
    if weights is not None and len(weights) != len(models):
        raise ConfigError(
            f"--weights lists {len(weights)} for {len(models)} --model: give one weight "
            f"per model, in the same order"
        )
    quantization = args.quantization
    if len(models) == 1:
        return load(models[0], backend=backends[0], quantization=quantization)
    return load_ensemble(
        models, weights, backends if len(backends) > 1 else backends[0], quantization=quantization
    )
