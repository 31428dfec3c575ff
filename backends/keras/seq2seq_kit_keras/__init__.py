"""Keras 3 (TensorFlow) backend for seq2seq-kit: registration only. The networks live in
``rnn`` and ``transformer``, their canonical weight names in ``layout``, the contract
adapter in ``model``.

Importing this package imports neither Keras nor TensorFlow (registering must stay cheap);
:func:`build` does, on the first model built.
"""

from __future__ import annotations

import os

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import MODEL, RUNTIME, TRAINING

__version__ = distribution_version("seq2seq-kit-keras")

#: Everything the core asks of a trainable backend: GPUs through TensorFlow, bf16/fp16
#: through Keras' mixed-precision policies, process groups through ``TF_CONFIG``.
CAPABILITIES = MODEL | TRAINING | RUNTIME | {"beam"}


def configure_environment() -> None:
    """Choose Keras' TensorFlow backend and quiet TensorFlow, unless the user already chose
    otherwise. Only effective before Keras / TensorFlow are first imported."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN (TF_ENABLE_ONEDNN_OPTS) stays at TensorFlow's default, on for x86: measured
    # with TF 2.21, its matmul gives every row the same bits whatever the batch size (for
    # inputs up to 256 wide), while Eigen's takes a different path for a single row, so
    # only with oneDNN does decoding a sentence alone reproduce decoding it in a batch
    # exactly. Agreement with the NumPy reference is the same either way (~5e-7). The
    # price: TensorFlow prints a oneDNN banner at import whatever the log level, and at the
    # first masked encoder run an error-level "oneDNN supports DT_BOOL only on platforms
    # with AVX-512" (a bool transpose in Keras' RNN; harmless; TF_CPP_MIN_LOG_LEVEL=3
    # hides it).


def build(spec, *, seed, optimizer, runtime=None):
    configure_environment()
    from .model import KerasModel

    return KerasModel(spec, seed=seed, optimizer=optimizer, runtime=runtime)


def join(launch, runtime):
    """Join a ``TF_CONFIG`` launch (:func:`.distributed.join`)."""
    configure_environment()
    from .distributed import join

    return join(launch, runtime)


@hookimpl
def register_backends(register):
    register(Backend("keras", __version__, CAPABILITIES, build, join=join))
