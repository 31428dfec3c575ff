"""Options that must do something: the saved [decode] settings and decode batch size in the
Python API, and the ``beam`` and ``resume`` capabilities."""

import dataclasses

import pytest

import seq2seq_kit
import seq2seq_kit.training
import seq2seq_kit.translator
from seq2seq_kit.config import Config
from seq2seq_kit.errors import BackendError, ConfigError
from seq2seq_kit.plugins import get_backend


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config = Config()
    config.train.progress = False
    config.decode.max_length = 2
    config.decode.batch_size = 2
    out = tmp_path_factory.mktemp("translator") / "digits"
    seq2seq_kit.train(config, out=out)
    return out


def test_the_python_api_uses_the_saved_decode_settings(model_dir):
    translator = seq2seq_kit.load(model_dir)
    assert translator.translate(["3"]) == ["th"]  # the saved max_length 2
    (hyp,) = translator.hypotheses(["3"])[0]
    assert hyp.truncated
    assert translator.translate(["3"], max_length=20) == ["three"]


def test_decode_batch_size_sets_how_many_inputs_share_a_step(model_dir, monkeypatch):
    sizes = []
    greedy = seq2seq_kit.decoding.greedy

    def counting(model, src, *args, **kwargs):
        sizes.append(src.shape[0])
        return greedy(model, src, *args, **kwargs)

    monkeypatch.setattr(seq2seq_kit.decoding, "greedy", counting)
    translator = seq2seq_kit.load(model_dir)
    translator.translate(list("12345"), max_length=20)
    assert sizes == [2, 2, 1]  # the saved decode.batch_size
    sizes.clear()
    translator.translate(list("12345"), max_length=20, batch_size=4)
    assert sizes == [4, 1]


def test_bad_decode_options_from_python_name_the_option(model_dir):
    translator = seq2seq_kit.load(model_dir)
    for options, key in [
        ({"beam": 0}, "beam"),
        ({"length_penalty": float("nan")}, "length"),
        ({"length_penalty": 50.0}, "length"),
    ]:
        with pytest.raises(ConfigError, match=key):
            translator.translate(["3"], **options)


def _without(capability: str, monkeypatch):
    numpy = get_backend("numpy")
    limited = dataclasses.replace(
        numpy, name="limited", capabilities=numpy.capabilities - {capability}
    )
    for module in (seq2seq_kit.translator, seq2seq_kit.training):
        monkeypatch.setattr(
            module, "get_backend", lambda name: limited if name == "limited" else numpy
        )


def test_beam_search_needs_the_beam_capability(model_dir, monkeypatch):
    _without("beam", monkeypatch)
    translator = seq2seq_kit.load(model_dir, backend="limited")
    assert translator.translate(["3"], max_length=20) == ["three"]
    for options in ({"beam": 2}, {"n_best": 2}):
        with pytest.raises(BackendError, match="'beam' capability"):
            translator.hypotheses(["3"], **options)


def test_resume_needs_the_resume_capability(tmp_path, monkeypatch):
    config = Config()
    config.train.epochs, config.train.progress = 2, False
    seq2seq_kit.train(config, out=tmp_path / "m")
    _without("resume", monkeypatch)
    with pytest.raises(BackendError, match="'resume' capability"):
        seq2seq_kit.train(resume=tmp_path / "m", epochs=3, backend="limited")
