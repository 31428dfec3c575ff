"""PyTorch backend for seq2seq-kit: registration only; numerics live in ``model``, where
and how they run in ``placement`` and ``distributed``.

Importing this module must not import torch (the core builds its registry on every run);
:func:`build` imports it on first use.
"""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import MODEL, RUNTIME, TRAINING

__version__ = distribution_version("seq2seq-kit-torch")

#: Everything the core asks of a trainable backend: CUDA devices, bf16/fp16 autocast and
#: torchrun process groups included.
CAPABILITIES = MODEL | TRAINING | RUNTIME | {"beam"}


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
    register(Backend("torch", __version__, CAPABILITIES, build, join=join))
