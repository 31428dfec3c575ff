"""Quantized decoding: a backend declaring a quantization scheme (the capability of the
scheme's name, :data:`seq2seq_kit.capabilities.QUANTIZATION`) runs trained models in it
within the scheme's tolerances (:data:`seq2seq_kit.quantization.TOLERANCES`) of its own
float32 decoding. Exact agreement is not expected: greedy outputs must be equal on at least
``agreement`` of the test sources, and where they are equal, the two models' scores (sums
of log-probabilities) within ``log_prob`` nats per output token, EOS counted.

The models: the digits seed configuration (every digit a test source) and a num2words model
tested on the 100 numbers its training held out, an RNN and a Transformer, each of the
architectures the backend builds; trained by the NumPy reference backend once per test
process, then loaded into the backend in float32 and in the scheme
(``seq2seq_kit.load(DIR, backend, quantization=SCHEME)``). A scheme the backend declares
but cannot run on this machine (CTranslate2's float16 on a CPU) is skipped with the
backend's reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..capabilities import QUANTIZATION
from ..errors import BackendError
from ..plugins import registry
from ..quantization import SCHEMES, TOLERANCES
from .base import DIGIT_INPUTS, REFERENCE, BackendTestBase, train_digits

#: The num2words models' data: every number below 1,000, a tenth of them held out.
NUM2WORDS = {"low": 0, "high": 1000, "count": 1000, "seed": 0}
HELD_OUT = 0.1
#: Small num2words models that greedy-decode the held-out numbers mostly right after a few
#: seconds of NumPy training: (model table, train table).
NUM2WORDS_MODELS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # the example's (examples/num2words.toml), smaller: the digits model has the LSTM
    "rnn": (
        {
            "cell": "gru",
            "hidden_size": 64,
            "embedding_size": 16,
            "attention": "bahdanau",
            "bidirectional": True,
        },
        {"epochs": 10, "learning_rate": 0.01},
    ),
    "transformer": (
        {
            "architecture": "transformer",
            "d_model": 32,
            "num_heads": 2,
            "ff_size": 64,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "dropout": 0.0,
        },
        {"epochs": 20, "learning_rate": 0.005},
    ),
}

#: Trained model directories and their test sources, by name: each trained once per process
#: (every backend's suite class tests the same models).
_TRAINED: dict[str, tuple[Path, list[str]]] = {}


def num2words_test_sources() -> list[str]:
    """The numbers the num2words models' training held out (its validation split)."""
    from ..data import held_out_sources
    from ..datasets import number_words

    pairs = number_words(**NUM2WORDS).pairs
    return sorted(held_out_sources({s for s, _ in pairs}, HELD_OUT, 0))


def _trained(name: str, folder: Path) -> tuple[Path, list[str]]:
    """``(model directory, test sources)`` of model ``name`` (``digits``, ``num2words
    rnn``, ``num2words transformer``), trained by the reference backend into ``folder``
    on first use."""
    if name in _TRAINED:
        return _TRAINED[name]
    out = folder / name.replace(" ", "-")
    if name == "digits":
        train_digits(REFERENCE, seed=0, out=out)
        _TRAINED[name] = (out, list(DIGIT_INPUTS))
        return _TRAINED[name]
    from ..api import train
    from ..config import Config

    model, options = NUM2WORDS_MODELS[name.split()[1]]
    config = Config.model_validate(
        {
            "model": model,
            "data": {"source": "num2words", "options": NUM2WORDS, "valid_fraction": HELD_OUT},
            "train": {"batch_size": 32, "progress": False, **options},
        }
    )
    train(config, backend=REFERENCE, out=out, seed=0)
    _TRAINED[name] = (out, num2words_test_sources())
    return _TRAINED[name]


class QuantizedTests(BackendTestBase):
    @pytest.fixture(scope="class")
    @classmethod
    def quantized_models(cls, tmp_path_factory: pytest.TempPathFactory):
        """``[(name, model directory, test sources)]``: the models of the architectures the
        backend builds (none trained for a backend declaring no scheme)."""
        backend = cls.backend()
        if not QUANTIZATION & backend.capabilities:
            pytest.skip(f"backend {cls.backend_name!r} declares no quantization scheme")
        if REFERENCE not in registry().backends:
            pytest.skip(f"reference backend {REFERENCE!r} is not installed")
        names = ["digits", "num2words rnn"] if backend.builds("rnn") else []
        names += ["num2words transformer"] if backend.builds("transformer") else []
        folder = tmp_path_factory.getbasetemp() / "quantized-models"
        folder.mkdir(exist_ok=True)
        return [(name, *_trained(name, folder)) for name in names]

    @pytest.mark.parametrize("scheme", list(SCHEMES))
    def test_quantized_greedy_within_the_scheme_s_tolerance(self, scheme, quantized_models):
        from ..api import load

        if scheme not in self.backend().capabilities:
            pytest.skip(f"backend {self.backend_name!r} does not declare {scheme!r}")
        tolerance = TOLERANCES[scheme]
        for name, path, sources in quantized_models:
            exact = load(path, backend=self.backend_name)
            try:
                quantized = load(path, backend=self.backend_name, quantization=scheme)
            except BackendError as exc:  # declared, but not on this machine's device
                pytest.skip(str(exc))
            expected = [h[0] for h in exact.hypotheses(sources)]
            got = [h[0] for h in quantized.hypotheses(sources)]
            same = [a.ids == b.ids for a, b in zip(expected, got, strict=True)]
            assert np.mean(same) >= tolerance.agreement, (
                f"{name}, {scheme}: greedy outputs equal to float32's on {sum(same)} of "
                f"{len(sources)} sources, fewer than {tolerance.agreement:.0%}"
            )
            gaps = [
                abs(a.score - b.score) / (len(a.ids) + 1)
                for a, b, equal in zip(expected, got, same, strict=True)
                if equal
            ]
            assert max(gaps) <= tolerance.log_prob, (
                f"{name}, {scheme}: scores {max(gaps):.4f} nats per token from float32's, "
                f"over {tolerance.log_prob}"
            )
            # quantized, not float32 under another name: the scores differ somewhere
            assert max(gaps) > 0, f"{name}, {scheme}: scores equal to float32's to the bit"
