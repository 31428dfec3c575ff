"""Named sets of the capabilities a backend declares (``Backend.capabilities``), for a
plugin to combine rather than restate: the NumPy reference declares ``MODEL | TRAINING |
{"beam"}``, a backend that also runs on GPUs and in data-parallel runs adds ``RUNTIME``.
``beam`` (beam search and n-best lists) and ``search`` (decoding through a
:class:`~seq2seq_kit.backend.SearchModel`) stand alone. Every capability the core knows:
:data:`seq2seq_kit.backend.KNOWN_CAPABILITIES`.
"""

from __future__ import annotations

#: What a model's spec may need (see :func:`seq2seq_kit.backend.required_capabilities`):
#: every option of an RNN and the Transformer architecture.
MODEL = frozenset(
    {"embedding", "multilayer", "gru", "bidirectional", "attention", "dropout", "transformer"}
)
#: Training, and resuming it exactly; without ``train`` a backend is inference only.
TRAINING = frozenset({"train", "resume"})
#: What a runtime may need (see :func:`seq2seq_kit.backend.runtime_capabilities`).
RUNTIME = frozenset({"devices", "mixed_precision", "distributed"})
