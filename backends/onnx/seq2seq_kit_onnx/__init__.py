"""ONNX Runtime backend for seq2seq-kit: inference only (no ``train`` capability), and the
``onnx`` export format. Registration only; ``model`` is the model, ``rnn`` and
``transformer`` build its ONNX graphs (opset 17) from the canonical weights, ``export``
writes them to a directory. Nothing here imports onnx or onnxruntime until a model is built
or exported.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-onnx")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: Everything decoding needs; dropout is accepted (a no-op at inference) so that models
#: trained with it load. No train, resume, devices, mixed_precision or distributed.
CAPABILITIES = frozenset(
    {
        "beam",
        "embedding",
        "multilayer",
        "gru",
        "bidirectional",
        "attention",
        "dropout",
        "transformer",
    }
)


def build(spec, *, seed, optimizer, runtime=None):
    from .model import build as build_model

    return build_model(spec, seed=seed, optimizer=optimizer, runtime=runtime)


def export(checkpoint, out):
    from .export import export as export_onnx

    return export_onnx(checkpoint, out)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="onnx",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
        )
    )


@hookimpl
def register_exporters(register):
    register("onnx", export)
