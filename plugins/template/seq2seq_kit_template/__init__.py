"""Registration of the ``template`` backend: cheap, imports no framework.

seq2seq-kit imports this module to list backends (``seq2seq-kit backends``), so keep heavy
imports inside :func:`build`.
"""

from __future__ import annotations

from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend, distribution_version

__version__ = distribution_version("seq2seq-kit-template")

#: Declare only what passes the conformance suite; checks of the others are skipped. Sets to
#: combine as your backend grows: seq2seq_kit.capabilities (MODEL, TRAINING, RUNTIME).
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
