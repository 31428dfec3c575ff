"""Named sets of the capabilities a backend declares in ``Backend.capabilities``, for a
plugin to combine rather than restate: the NumPy reference declares
``MODEL | TRAINING | {"beam"}``, and a backend that also runs on GPUs and in data-parallel
runs adds ``RUNTIME``.

- ``MODEL``: whatever a spec may need (see
  :func:`~seq2seq_kit.backend.required_capabilities`): ``embedding``, ``multilayer``,
  ``gru``, ``bidirectional``, ``attention``, ``dropout``, ``transformer``.
- ``TRAINING``: ``train``, ``resume`` to resume it exactly, ``freeze`` to keep the
  weights of :attr:`~seq2seq_kit.spec.OptimizerSpec.frozen` fixed, and ``ema`` to keep the
  moving average of :attr:`~seq2seq_kit.spec.OptimizerSpec.ema_decay`
  (:mod:`seq2seq_kit.ema`); without ``train`` a backend is inference only.
- ``RUNTIME``: whatever a runtime may need (see
  :func:`~seq2seq_kit.backend.runtime_capabilities`): ``devices``, ``mixed_precision``,
  ``distributed``.

- ``SEARCH_OPTIONS``: for a backend with its own search (``search``), the decoding options
  its engine may map (``sampling``, ``prefix``, ``min_length``, ``no_repeat_ngram``,
  ``banned_tokens``, ``constraints``: lexical constraints;
  :data:`seq2seq_kit.decoding.SEARCH_OPTION_CAPABILITIES`). A backend that steps the
  decoder needs none of them: the core's searches take every option.

- ``QUANTIZATION``: the quantization schemes (:data:`seq2seq_kit.quantization.SCHEMES`:
  ``int8``, ``int8_float32``, ``int16``, ``float16``, ``bfloat16``), each a capability of
  its own: a backend declares those it runs a model in from float32 weights
  (:attr:`seq2seq_kit.runtime.Runtime.quantization`).

``beam`` (beam search and n-best lists) and ``search`` (decoding through a
:class:`~seq2seq_kit.backend.SearchModel`) stand alone. All of them:
:data:`seq2seq_kit.backend.KNOWN_CAPABILITIES`.
"""

from __future__ import annotations

from .quantization import SCHEMES

MODEL = frozenset(
    {"embedding", "multilayer", "gru", "bidirectional", "attention", "dropout", "transformer"}
)
TRAINING = frozenset({"train", "resume", "freeze", "ema"})
RUNTIME = frozenset({"devices", "mixed_precision", "distributed"})
SEARCH_OPTIONS = frozenset(
    {"sampling", "prefix", "min_length", "no_repeat_ngram", "banned_tokens", "constraints"}
)
QUANTIZATION = frozenset(SCHEMES)
