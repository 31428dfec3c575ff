"""Learning the seed task, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from .base import (
    DIGIT_INPUTS,
    DIGIT_WORDS,
    BackendTestBase,
    family_specs,
    mixed_batch,
    requires,
    train_digits,
)


class TrainingTests(BackendTestBase):
    def test_digits_nine_of_nine(self, digits_model):
        translator, _ = digits_model
        assert translator.translate(DIGIT_INPUTS) == DIGIT_WORDS

    @requires("train")
    @pytest.mark.parametrize("seed", [1, 2])
    def test_digits_nine_of_nine_other_seeds(self, seed):
        translator = train_digits(self.backend_name, seed=seed)
        assert translator.translate(DIGIT_INPUTS) == DIGIT_WORDS

    @requires("attention", "gru", "embedding")
    def test_digits_with_attention_and_gru(self):
        from ..api import train
        from ..config import Config

        config = Config()
        config.train.progress = False
        config.model.cell, config.model.attention, config.model.embedding_size = "gru", "dot", 16
        translator = train(config, backend=self.backend_name, data="digits")
        assert translator.translate(DIGIT_INPUTS) == DIGIT_WORDS

    @requires("train")
    @requires("transformer")
    def test_transformer_digits_nine_of_nine(self):
        # the seed notebook's budget (300 epochs of batch 2) with a 2 + 2-layer Transformer
        # of d_model 64 (the spec's defaults) in place of the LSTM
        from ..api import train
        from ..config import Config

        config = Config.model_validate({"model": {"architecture": "transformer"}})
        config.train.progress = False
        translator = train(config, backend=self.backend_name, data="digits")
        assert translator.translate(DIGIT_INPUTS) == DIGIT_WORDS

    @requires("train")
    def test_same_seed_same_weights(self):
        for spec in family_specs(self.backend(), last=True):  # dropout too, where declared
            self._check_same_seed(spec)

    def _check_same_seed(self, spec):
        batch = mixed_batch(spec)
        runs = []
        for _ in range(2):
            model = self.build(spec, seed=5)
            losses = [model.train_step(batch) for _ in range(5)]
            runs.append((losses, model.get_weights()))
        assert runs[0][0] == runs[1][0]
        for name, value in runs[0][1].items():
            np.testing.assert_array_equal(value, runs[1][1][name], err_msg=name)

    @requires("train")
    def test_a_diverging_run_stops_and_saves_no_nan_weights(self, tmp_path):
        from ..api import train
        from ..checkpoint import load_checkpoint, non_finite
        from ..config import Config
        from ..errors import TrainingError

        config = Config()
        config.train.progress, config.train.epochs = False, 30
        config.train.learning_rate, config.train.save_seconds = 1e300, 0.0
        out = tmp_path / "diverged"
        with pytest.raises(TrainingError, match=r"epoch \d+ step \d+"):
            train(config, backend=self.backend_name, data="digits", out=out)
        if out.exists():  # an epoch ended with finite weights before the loss diverged
            saved = load_checkpoint(out, extra=True)
            assert not non_finite(saved.weights) and not non_finite(saved.extra["last"])
