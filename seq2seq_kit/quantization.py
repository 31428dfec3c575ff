"""Quantization schemes: how an inference engine stores a model's weights and multiplies by
them, named as CTranslate2 names its compute types (``int8``, ``int8_float32``, ``int16``,
``float16``, ``bfloat16``), so that one name means one thing in ``export --quantization``,
in :attr:`seq2seq_kit.runtime.Runtime.quantization` and in a backend's capabilities.

A backend declares each scheme it runs as a capability of the same name (the
``ctranslate2`` backend all five, the ``onnx`` backend ``int8``); an exporter registers the
schemes it writes (``register(name, export, schemes)``, :mod:`seq2seq_kit.hookspecs`). A
scheme trades exactness for size and speed: a quantized model's outputs are checked against
its float32 model's with the tolerances of :data:`TOLERANCES`, not for equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scheme = Literal["int8", "int8_float32", "int16", "float16", "bfloat16"]

#: What each scheme stores and computes in (CTranslate2's definitions,
#: https://opennmt.net/CTranslate2/quantization.html); layer norms, biases and the
#: log-softmax stay float32 in every scheme but float16 and bfloat16.
SCHEMES: dict[str, str] = {
    "int8": "8-bit integer weights (a scale per output row), int8 matrix products with int32 "
    "accumulation; the rest in the device's float type (float32 on a CPU)",
    "int8_float32": "int8 weights and products as int8, the rest in float32",
    "int16": "16-bit integer weights and products (CTranslate2 on CPUs with Intel MKL only)",
    "float16": "half-precision weights and arithmetic (GPUs)",
    "bfloat16": "bfloat16 weights and arithmetic (GPUs of compute capability 8 and above)",
}


@dataclass(frozen=True)
class Tolerance:
    """How far a quantized model's decoding may be from its float32 model's.

    Attributes:
        agreement: the least share of sources whose greedy output (ids) equals float32's.
        log_prob: the largest difference, in nats per output token (EOS counted),
            between the two models' scores (sums of log-probabilities) of an output both
            decode alike.
    """

    agreement: float
    log_prob: float


#: The conformance suite's tolerances per scheme (:mod:`seq2seq_kit.testing.quantized`).
#: ``agreement``: 99% of the digits and num2words test sources. ``log_prob``: int8 at about
#: four times the largest difference measured on the suite's models (0.007 nats per token,
#: one source of the ONNX Runtime num2words RNN, whose mean is 0.0001; 0.002 the CTranslate2
#: Transformer); int8_float32 and bfloat16 (as many significant bits as int8) the same,
#: int16 and float16 (more bits) half of it: not measured here, the CPUs the suite ran on
#: run none of them. On larger models the differences grow: 0.009 nats per token on
#: average on the Tatoeba Transformer in int8 (docs/export.md).
TOLERANCES: dict[str, Tolerance] = {
    "int8": Tolerance(agreement=0.99, log_prob=0.03),
    "int8_float32": Tolerance(agreement=0.99, log_prob=0.03),
    "int16": Tolerance(agreement=0.99, log_prob=0.015),
    "float16": Tolerance(agreement=0.99, log_prob=0.015),
    "bfloat16": Tolerance(agreement=0.99, log_prob=0.03),
}


def check_scheme(scheme: str) -> str:
    """``scheme`` when it is one of :data:`SCHEMES`.

    Raises:
        ValueError: another name, naming the schemes.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization {scheme!r}; one of: {', '.join(SCHEMES)}")
    return scheme
