"""PyTorch backend for seq2seq-kit: registration only; numerics live in ``model``.

Importing this module must not import torch (the core builds its registry on every run);
:func:`build` imports it on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-torch")
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
        "devices",
        "mixed_precision",
        "distributed",
    }
)


def build(spec, *, seed, optimizer, runtime=None):
    """A :class:`.model.TorchModel` of ``spec`` running as ``runtime`` says (threads,
    device, precision; see :mod:`.placement`; a process group: :mod:`.distributed`)."""
    from .model import TorchModel
    from .placement import apply_threads

    if runtime is not None:
        apply_threads(runtime.threads)
    return TorchModel(spec, seed=seed, optimizer=optimizer, runtime=runtime)


def join(launch, runtime):
    """Join a torchrun launch (:func:`.distributed.join`); imports torch."""
    from .distributed import join

    return join(launch, runtime)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="torch",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
            join=join,
        )
    )
