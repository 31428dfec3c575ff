"""Saving and loading, within the backend and across every installed backend."""

from __future__ import annotations

import numpy as np
import pytest

from ..api import load
from ..checkpoint import Checkpoint, save_checkpoint
from ..errors import CheckpointError
from ..plugins import registry
from ..vocab import Vocabulary
from .base import (
    DIGIT_INPUTS,
    DIGIT_WORDS,
    BackendTestBase,
    assert_same_hypotheses,
    family_specs,
    perturbed_weights,
)
from .decoding import MIXED


class CheckpointTests(BackendTestBase):
    def test_save_load_round_trip(self, digits_model):
        translator, path = digits_model
        loaded = load(path, backend=self.backend_name)
        assert loaded.translate(DIGIT_INPUTS) == DIGIT_WORDS
        assert_same_hypotheses(loaded.hypotheses(MIXED), translator.hypotheses(MIXED))
        for name, value in loaded.model.get_weights().items():
            np.testing.assert_array_equal(value, translator.model.get_weights()[name])

    def test_loads_into_every_other_backend(self, digits_model):
        translator, path = digits_model
        expected = translator.hypotheses(MIXED)
        # the digits model is an RNN: backends that build none (Transformer engines) sit out
        others = sorted(
            name
            for name, backend in registry().backends.items()
            if name != self.backend_name and backend.builds("rnn")
        )
        if not others:
            pytest.skip("no other backend installed")
        for other in others:
            loaded = load(path, backend=other)
            assert loaded.translate(DIGIT_INPUTS) == DIGIT_WORDS, other
            got = loaded.hypotheses(MIXED)
            assert [h[0].ids for h in got] == [h[0].ids for h in expected], other
            scores = [h[0].score for h in got]
            np.testing.assert_allclose(scores, [h[0].score for h in expected], atol=1e-4)

    def test_every_architecture_loads_into_every_other_backend(self, tmp_path):
        # weights this backend holds, saved, decode alike in every backend that builds them
        source, target = Vocabulary(tuple("1234567")), Vocabulary(tuple("abcdefghi"))
        texts = ["1", "7654321", "", "42", "3333333"]
        for spec in family_specs(self.backend()):  # 11 source and 13 target ids, as these
            model = self.build(spec)
            model.set_weights(perturbed_weights(spec, 15))
            path = tmp_path / spec.architecture
            save_checkpoint(Checkpoint(spec, source, target, model.get_weights(), 9), path)
            mine = load(path, backend=self.backend_name).hypotheses(texts)
            for other in sorted(registry().backends):
                if not registry().backends[other].builds(spec.architecture):
                    continue
                got = load(path, backend=other).hypotheses(texts)
                assert [h[0].ids for h in got] == [h[0].ids for h in mine], (other, spec)
                np.testing.assert_allclose(
                    [h[0].score for h in got], [h[0].score for h in mine], atol=1e-4
                )

    @pytest.mark.parametrize("damage", ["missing", "truncated"])
    def test_damaged_weights_file(self, digits_model, tmp_path, damage):
        import shutil

        _, path = digits_model
        copy = tmp_path / "model"
        shutil.copytree(path, copy)
        weights = copy / "weights.safetensors"
        if damage == "missing":
            weights.unlink()
        else:
            weights.write_bytes(weights.read_bytes()[:100])
        with pytest.raises(CheckpointError, match="weights.safetensors"):
            load(copy, backend=self.backend_name)
