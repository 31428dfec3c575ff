"""CTranslate2 backend for seq2seq-kit: registration only. ``convert`` maps canonical
Transformer weights to CTranslate2's model spec, ``model`` runs them (inference only, with
CTranslate2's own search: the ``search`` capability; in float32 or a quantization scheme),
``export`` writes a model directory that plain ``ctranslate2.Translator`` loads, quantized
or not, and reads one back. CTranslate2 is imported on first use."""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import QUANTIZATION, SEARCH_OPTIONS

__version__ = distribution_version("seq2seq-kit-ctranslate2")

#: Inference only (no ``train``); Transformers only; ``dropout`` is accepted and does
#: nothing (it acts in training alone); ``devices``: CUDA through CTranslate2's own build;
#: the decoding options of the core mapped onto CTranslate2's own (``SEARCH_OPTIONS``), all
#: but lexical constraints, which CTranslate2 has not (the core refuses them for it);
#: every quantization scheme, CTranslate2's compute types (``QUANTIZATION``: float16 and
#: bfloat16 run on GPUs only, int16 on CPUs with Intel MKL; another device refuses them).
CAPABILITIES = (
    frozenset({"transformer", "beam", "search", "dropout", "devices"})
    | (SEARCH_OPTIONS - {"constraints"})
    | QUANTIZATION
)
#: CTranslate2 has no RNN decoder.
ARCHITECTURES = frozenset({"transformer"})


def build(spec, *, seed, optimizer, runtime=None):
    from .model import CTranslate2Model

    return CTranslate2Model(spec, seed=seed, runtime=runtime)


def export(checkpoint, out, quantization=None):
    from .export import export_checkpoint

    return export_checkpoint(checkpoint, out, quantization)


@hookimpl
def register_backends(register):
    register(Backend("ctranslate2", __version__, CAPABILITIES, build, architectures=ARCHITECTURES))


@hookimpl
def register_exporters(register):
    register("ctranslate2", export, QUANTIZATION)
