"""The Python API: ``train`` a model and ``load`` one, each giving a :class:`Translator`;
``load_ensemble`` several as one :class:`Ensemble`; ``average`` checkpoints into a model
directory.

The work is done in :mod:`seq2seq_kit.training`, :mod:`seq2seq_kit.translator`,
:mod:`seq2seq_kit.ensemble` and :mod:`seq2seq_kit.averaging`; this module is the stable
place to import them from."""

from __future__ import annotations

from .averaging import average
from .ensemble import Ensemble, ensemble, load_ensemble
from .model_setup import check_model_fits, model_spec, optimizer_spec
from .spec import decoding_cap, model_sizes
from .training import train
from .translator import Translator, default_max_length, load

__all__ = [
    "Ensemble",
    "Translator",
    "average",
    "check_model_fits",
    "decoding_cap",
    "default_max_length",
    "ensemble",
    "load",
    "load_ensemble",
    "model_sizes",
    "model_spec",
    "optimizer_spec",
    "train",
]
