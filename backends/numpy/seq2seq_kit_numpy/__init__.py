"""NumPy reference backend for seq2seq-kit: registration only; ``model`` is the
model, ``rnn`` and ``transformer`` its networks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-numpy")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

CAPABILITIES = frozenset(
    {
        "train",
        "beam",
        "embedding",
        "multilayer",
        "gru",
        "bidirectional",
        "attention",
        "dropout",
        "resume",
        "transformer",
    }
)


def build(spec, *, seed, optimizer, runtime=None):
    from .model import NumpyModel

    if runtime is not None:
        # NumPy's matrix products run on its BLAS's thread pool: the process's only one
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=runtime.threads, user_api="blas")
    return NumpyModel(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="numpy",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
        )
    )
