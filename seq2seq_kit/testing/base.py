"""Shared fixtures of the conformance suite: the backend under test, capability gating,
declared known failures, and the models the checks run on."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, ClassVar

import numpy as np
import pytest

from ..backend import Backend, Model, required_capabilities
from ..batching import Batch, make_batch
from ..plugins import get_backend, registry
from ..spec import ModelSpec, OptimizerSpec, Spec, TransformerSpec
from ..weights import initial_weights

REFERENCE = "numpy"

#: Digits -> words: the seed notebook's task and budget (300 epochs at batch size 2).
DIGIT_INPUTS = [str(d) for d in range(1, 10)]
DIGIT_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def assert_same_hypotheses(got, expected, atol: float = 1e-4) -> None:
    """n-best lists equal in ids and truncation, scores within ``atol``: weights cross the
    contract as float32, so a model that computes in more precision may change scores by
    rounding when saved and reloaded."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert [(h.ids, h.truncated) for h in a] == [(h.ids, h.truncated) for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=atol)


def requires(*capabilities: str):
    """Mark a check as needing backend capabilities; it is skipped where one is missing."""

    def mark(func):
        func._seq2seq_requires = getattr(func, "_seq2seq_requires", ()) + capabilities
        return func

    return mark


def uses_step(func):
    """Mark a check as driving ``encode`` / ``step`` / ``reorder`` / ``attention`` or the
    teacher-forced ``log_probs`` / ``loss`` itself: it is skipped for a backend declaring
    ``search`` (an engine with its own search and no step-by-step decoder,
    :class:`seq2seq_kit.backend.SearchModel`)."""
    func._seq2seq_uses_step = True
    return func


#: Architectures the agreement checks run on: (spec options, capabilities they need).
VARIANTS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, set()),
    ({"embedding_size": 5}, {"embedding"}),
    ({"num_layers": 2}, {"multilayer"}),
    ({"cell": "gru", "embedding_size": 5}, {"gru", "embedding"}),
    ({"bidirectional": True, "num_layers": 2}, {"bidirectional", "multilayer"}),
    ({"attention": "dot"}, {"attention"}),
    ({"attention": "general", "embedding_size": 5}, {"attention", "embedding"}),
    ({"attention": "bahdanau", "bidirectional": True}, {"attention", "bidirectional"}),
    (
        {
            "cell": "gru",
            "bidirectional": True,
            "attention": "bahdanau",
            "num_layers": 2,
            "embedding_size": 5,
            "dropout": 0.3,
        },
        {"gru", "bidirectional", "attention", "multilayer", "embedding", "dropout"},
    ),
]


#: Transformer architectures the agreement checks run on, small enough for float64
#: finite differences: (spec options, capabilities they need). No dropout unless named.
#: Each activation is in one of them: ReLU (the default), GELU and swish.
TRANSFORMER_VARIANTS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"transformer"}),
    # every other choice at once (each check builds and, in compiled backends, traces a
    # model per variant: one variant per option would double the suite's time)
    (
        {
            "layer_norm": "post",
            "activation": "gelu",
            "positions": "learned",
            "tgt_vocab_size": 11,
            "share_embeddings": True,
            "tie_output_embeddings": True,
        },
        {"transformer"},
    ),
    # swish rides here: the agreement checks run this variant dropout-free (log-probabilities
    # and gradients have no dropout; engine search drops the rates), and a Transformer
    # backend declares dropout to load models trained at the default rate. The first
    # variant stays at the defaults: it is the model of every check that needs just one.
    (
        {"dropout": 0.3, "attention_dropout": 0.2, "activation": "swish"},
        {"transformer", "dropout"},
    ),
]

#: The suite's Transformer size: 2 + 2 layers, d_model 8 in 2 heads, feed-forward 12.
TRANSFORMER_BASE = {
    "encoder_layers": 2,
    "decoder_layers": 2,
    "d_model": 8,
    "num_heads": 2,
    "ff_size": 12,
    "dropout": 0.0,
    "max_positions": 24,
}


def spec_variants(backend: Backend) -> list[Spec]:
    """Small architectures covering every declared capability, alone and together: the RNN
    variants first, then the Transformer's (for a backend declaring ``transformer``)."""
    rnn = [
        ModelSpec(11, 13, hidden_size=6, **options)
        for options, needs in VARIANTS
        if needs <= backend.capabilities and backend.builds("rnn")
    ]
    transformer = [
        TransformerSpec(**{"src_vocab_size": 11, "tgt_vocab_size": 13, **TRANSFORMER_BASE, **o})
        for o, needs in TRANSFORMER_VARIANTS
        if needs <= backend.capabilities
    ]
    return rnn + transformer


def family_specs(backend: Backend, last: bool = False) -> list[Spec]:
    """The plainest (or, with ``last``, the richest) variant of each architecture the
    backend builds: the checks that need one model run once per architecture."""
    by_family: dict[str, list[Spec]] = {}
    for spec in spec_variants(backend):
        by_family.setdefault(spec.architecture, []).append(spec)
    return [specs[-1] if last else specs[0] for specs in by_family.values()]


def attention_specs(backend: Backend) -> list[Spec]:
    """The richest attention model of each architecture the backend builds (none for a
    backend without ``attention`` or ``transformer``)."""
    by_family: dict[str, Spec] = {}
    for spec in spec_variants(backend):
        if spec.has_attention:
            by_family[spec.architecture] = spec
    return list(by_family.values())


def without_dropout(spec: Spec) -> Spec:
    """``spec`` with every dropout rate 0 (each key named ``*dropout``)."""
    return replace(spec, **{f.name: 0.0 for f in fields(spec) if f.name.endswith("dropout")})


def perturbed_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Initial weights plus noise, so biases and every gate matter in comparisons."""
    rng = np.random.default_rng(seed + 1000)
    return {
        k: (v + rng.normal(0.0, 0.3, v.shape)).astype(np.float32)
        for k, v in initial_weights(spec, seed).items()
    }


def mixed_batch(spec: Spec, seed: int = 0) -> Batch:
    """A batch mixing source lengths 1 and 9 (and between), with padded targets."""
    rng = np.random.default_rng(seed)
    src_lengths = [1, 9, 4, 1, 6]
    tgt_lengths = [3, 1, 7, 5, 2]
    sources = [rng.integers(4, spec.src_vocab_size, n).tolist() for n in src_lengths]
    targets = [rng.integers(4, spec.tgt_vocab_size, n).tolist() for n in tgt_lengths]
    return make_batch(sources, targets)


class BackendTestBase:
    """Base of every check class. Subclasses set ``backend_name``; ``known_failures`` maps
    a check's name to the reason it is expected to fail (reported as xfail, strict)."""

    backend_name: ClassVar[str] = ""
    known_failures: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _gate(self, request: pytest.FixtureRequest) -> None:
        name = request.node.originalname or request.node.name
        if name in self.known_failures:
            request.applymarker(pytest.mark.xfail(reason=self.known_failures[name], strict=True))
        stepping = getattr(request.function, "_seq2seq_uses_step", False)
        if stepping and "search" in self.backend().capabilities:
            pytest.skip(
                f"backend {self.backend_name!r} decodes with its own search (capability "
                f"'search'): it has no encode/step to drive"
            )
        needed = getattr(request.function, "_seq2seq_requires", ())
        if needed:
            missing = set(needed) - set(self.backend().capabilities)
            if missing:
                pytest.skip(f"backend {self.backend_name!r} lacks {sorted(missing)}")

    @classmethod
    def backend(cls) -> Backend:
        if not cls.backend_name:
            raise TypeError(f"{cls.__name__}.backend_name is not set")
        return get_backend(cls.backend_name)

    def build(self, spec: Spec, seed: int = 0, **kwargs: Any) -> Model:
        return self.backend().create(spec, seed=seed, **kwargs)

    def reference(self, spec: Spec, optimizer: OptimizerSpec | None = None) -> Model:
        if REFERENCE not in registry().backends:
            pytest.skip(f"reference backend {REFERENCE!r} is not installed")
        reference = get_backend(REFERENCE)
        missing = required_capabilities(spec) - reference.capabilities
        if missing:
            pytest.skip(f"the reference backend {REFERENCE!r} lacks {sorted(missing)}")
        return reference.create(spec, seed=0, optimizer=optimizer)

    @pytest.fixture(scope="class")
    @classmethod
    def digits_model(cls, tmp_path_factory: pytest.TempPathFactory):
        """``(translator, model_dir)``: the seed configuration trained on digits by this
        backend and saved; for an inference-only backend (no ``train``), trained by the
        reference backend, saved, and loaded into this one (its weights through
        ``set_weights``), so that every decoding check runs on a trained model."""
        if not cls.backend().builds("rnn"):
            pytest.skip(f"backend {cls.backend_name!r} builds no RNN (the digits model is one)")
        from ..api import load

        out = tmp_path_factory.mktemp(f"digits-{cls.backend_name}") / "model"
        if "train" in cls.backend().capabilities:
            return train_digits(cls.backend_name, seed=0, out=out), out
        if REFERENCE not in registry().backends:
            pytest.skip(f"reference backend {REFERENCE!r} is not installed")
        train_digits(REFERENCE, seed=0, out=out)
        return load(out, backend=cls.backend_name), out


def train_digits(backend: str, seed: int, out: Any = None):
    """Train the seed notebook's configuration (the config defaults) on digits."""
    from ..api import train
    from ..config import Config

    config = Config()
    config.train.progress = False
    return train(config, backend=backend, data="digits", seed=seed, out=out)
