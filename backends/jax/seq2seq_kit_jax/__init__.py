"""JAX backend for seq2seq-kit: registration only; numerics live in ``model``, the decoder
cells in ``lstm`` and ``gru``, the Transformer in ``transformer``.

Importing this module must not import jax (the core builds its registry on every run);
:func:`build` imports it on first use.
"""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import MODEL, TRAINING

__version__ = distribution_version("seq2seq-kit-jax")

#: The reference's: no devices, mixed precision or process groups (``build`` runs on the
#: CPU with JAX's own thread defaults).
CAPABILITIES = MODEL | TRAINING | {"beam"}


def build(spec, *, seed, optimizer, runtime=None):
    from .model import JaxModel

    return JaxModel(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(Backend("jax", __version__, CAPABILITIES, build))
