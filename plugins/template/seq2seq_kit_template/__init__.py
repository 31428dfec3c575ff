"""Registration of the ``template`` backend: cheap, imports no framework.

seq2seq-kit imports this module to list backends (``seq2seq-kit backends``), so keep heavy
imports inside :func:`build`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend

try:
    __version__ = version("seq2seq-kit-template")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: Declare only what passes the conformance suite; checks of the others are skipped.
CAPABILITIES = frozenset({"train", "beam", "embedding", "multilayer"})


def build(spec, *, seed, optimizer):
    """Called when a model is first built: the place to import your framework."""
    from .model import TemplateModel

    return TemplateModel(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="template",
            version=__version__,
            capabilities=CAPABILITIES,
            build=build,
        )
    )
