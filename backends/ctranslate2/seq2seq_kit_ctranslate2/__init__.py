"""CTranslate2 backend for seq2seq-kit: registration only. ``convert`` maps canonical
Transformer weights to CTranslate2's model spec, ``model`` runs them (inference only, with
CTranslate2's own search: the ``search`` capability), ``export`` writes a model directory
that plain ``ctranslate2.Translator`` loads. CTranslate2 is imported on first use."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-ctranslate2")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: Inference only (no ``train``); Transformers only; ``dropout`` is accepted and does
#: nothing (it acts in training alone); ``devices``: CUDA through CTranslate2's own build.
CAPABILITIES = frozenset({"transformer", "beam", "search", "dropout", "devices"})


def build(spec, *, seed, optimizer, runtime=None):
    from .model import CTranslate2Model

    return CTranslate2Model(spec, seed=seed, runtime=runtime)


def export(checkpoint, out):
    from .export import export_checkpoint

    return export_checkpoint(checkpoint, out)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="ctranslate2",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
            architectures=frozenset({"transformer"}),
        )
    )


@hookimpl
def register_exporters(register):
    register("ctranslate2", export)
