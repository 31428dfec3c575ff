"""JAX backend for seq2seq-kit: registration only; numerics live in ``model``.

Importing this module must not import jax (the core builds its registry on every run);
:func:`build` imports it on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-jax")
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
    from .model import JaxModel

    return JaxModel(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="jax",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
        )
    )
