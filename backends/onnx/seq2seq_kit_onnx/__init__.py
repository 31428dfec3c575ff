"""ONNX Runtime backend for seq2seq-kit: inference only (no ``train`` capability), and the
``onnx`` export format. Registration only; ``model`` is the model, ``rnn`` and
``transformer`` build its ONNX graphs (opset 17) from the canonical weights, ``export``
writes them to a directory. Nothing here imports onnx or onnxruntime until a model is built
or exported.
"""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version
from seq2seq_kit.capabilities import MODEL

__version__ = distribution_version("seq2seq-kit-onnx")

#: Everything decoding needs; dropout is accepted (a no-op at inference) so that models
#: trained with it load; ``int8``: ONNX Runtime's integer kernels (``seq2seq_kit_onnx.quantize``).
#: No train, resume, devices, mixed_precision or distributed.
CAPABILITIES = MODEL | {"beam", "int8"}
#: The quantization schemes ``export --format onnx --quantization`` writes.
EXPORT_SCHEMES = frozenset({"int8"})


def build(spec, *, seed, optimizer, runtime=None):
    from .model import build as build_model

    return build_model(spec, seed=seed, optimizer=optimizer, runtime=runtime)


def export(checkpoint, out, quantization=None):
    from .export import export as export_onnx

    return export_onnx(checkpoint, out, quantization)


@hookimpl
def register_backends(register):
    register(Backend("onnx", __version__, CAPABILITIES, build))


@hookimpl
def register_exporters(register):
    register("onnx", export, EXPORT_SCHEMES)
