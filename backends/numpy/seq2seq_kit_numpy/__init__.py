"""NumPy reference backend for seq2seq-kit: registration only; ``model`` is the
model, ``rnn`` and ``transformer`` its networks."""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import MODEL, TRAINING

__version__ = distribution_version("seq2seq-kit-numpy")

#: Every model, trained and decoded with beam search, on the CPU alone.
CAPABILITIES = MODEL | TRAINING | {"beam"}


def build(spec, *, seed, optimizer, runtime=None):
    from .model import NumpyModel

    if runtime is not None:
        # NumPy's matrix products run on its BLAS's thread pool: the process's only one
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=runtime.threads, user_api="blas")
    return NumpyModel(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(Backend("numpy", __version__, CAPABILITIES, build))
