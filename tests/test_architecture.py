"""The architecture is the user's choice end to end: the config builds the matching spec,
a Transformer's max_positions bounds training pairs, decoding and inputs, and checkpoints,
``info`` and ``plot`` carry the choice. A stand-in backend (tests/toy_transformer.py) plays
the Transformer; the test needing a trained one runs when a backend declares it."""

import dataclasses
import importlib.util
import json
import logging

import numpy as np
import pytest
import toy_transformer

import seq2seq_kit
from seq2seq_kit.api import model_spec, optimizer_spec
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config, RNNConfig, TransformerConfig
from seq2seq_kit.errors import ConfigError, InputTooLongError
from seq2seq_kit.plugins import registry
from seq2seq_kit.prepare import length_caps as _length_caps
from seq2seq_kit.spec import ModelSpec, OptimizerSpec, TransformerSpec


@pytest.fixture
def toy_backend(monkeypatch):
    return toy_transformer.register(monkeypatch)


# sources "a" * n -> targets "b" * n, n = 1..8
PAIRS = [("a" * n, "b" * n) for n in range(1, 9)]


def transformer_config(max_positions=6, **train) -> Config:
    config = Config(model=TransformerConfig(max_positions=max_positions, d_model=8, num_heads=2))
    config.train.epochs, config.train.progress = 1, False
    for key, value in train.items():
        setattr(config.train, key, value)
    config.data.valid_fraction = 0.0
    return config


def spec_defaults(cls) -> dict:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


@pytest.mark.parametrize(
    "config, spec", [(RNNConfig, ModelSpec), (TransformerConfig, TransformerSpec)]
)
def test_each_architecture_config_has_its_spec_keys_and_defaults(config, spec):
    ours = {k: f.default for k, f in config.model_fields.items() if k != "architecture"}
    assert ours == spec_defaults(spec)
    assert config().architecture == spec.architecture


def test_the_config_builds_the_spec_and_optimizer_it_names():
    config = Config.model_validate(
        {
            "data": {"shared_vocabulary": True},
            "model": {
                "architecture": "transformer",
                "encoder_layers": 3,
                "decoder_layers": 1,
                "d_model": 12,
                "num_heads": 3,
                "ff_size": 20,
                "dropout": 0.2,
                "attention_dropout": 0.05,
                "activation": "gelu",
                "layer_norm": "post",
                "positions": "learned",
                "max_positions": 30,
                "tie_output_embeddings": True,
                "share_embeddings": True,
            },
            "train": {
                "label_smoothing": 0.1,
                "adam_beta1": 0.8,
                "adam_beta2": 0.98,
                "adam_epsilon": 1e-9,
                "learning_rate": 0.01,
                "clip_norm": 1.0,
            },
        }
    )
    spec = model_spec(config, 17, 17)
    assert spec == TransformerSpec(
        17, 17, 3, 1, 12, 3, 20, 0.2, 0.05, "gelu", "post", "learned", 30, True, True
    )
    assert optimizer_spec(config) == OptimizerSpec(0.01, 0.8, 0.98, 1e-9, 1.0, 0.1)
    rnn = Config.model_validate({"model": {"hidden_size": 6, "cell": "gru"}})
    assert model_spec(rnn, 5, 7) == ModelSpec(5, 7, hidden_size=6, cell="gru")
    assert optimizer_spec(Config()) == OptimizerSpec()


def test_share_embeddings_with_unequal_vocabularies_is_a_config_error():
    # the config check sees no vocabularies; a shared vocabulary makes them equal, but a
    # Config built by assignment may slip past it: the spec's refusal is a ConfigError too
    config = Config.model_validate(
        {"data": {"shared_vocabulary": True}, "model": {"architecture": "transformer"}}
    )
    config.model.share_embeddings = True
    with pytest.raises(ConfigError, match="shared_vocabulary"):
        model_spec(config, 5, 7)


def test_length_caps_take_the_smaller_of_the_data_keys_and_max_positions():
    rnn = Config()
    assert _length_caps(rnn) == ((None, ""), (None, ""))
    rnn.data.max_source_length = 4
    assert _length_caps(rnn) == ((4, "data.max_source_length = 4"), (None, ""))
    config = transformer_config(max_positions=6)
    assert _length_caps(config) == (
        (6, "model.max_positions = 6"),
        (5, "model.max_positions - 1 = 5"),
    )
    config.data.max_source_length, config.data.max_target_length = 3, 9
    assert _length_caps(config) == (
        (3, "data.max_source_length = 3"),
        (5, "model.max_positions - 1 = 5"),
    )


def test_training_skips_and_counts_pairs_a_transformer_cannot_hold(toy_backend, tmp_path):
    translator = seq2seq_kit.train(
        transformer_config(max_positions=6), data=PAIRS, backend=toy_backend, out=tmp_path / "m"
    )
    # targets need a position for BOS: n <= 5 on the target side, n <= 6 on the source side
    assert translator.train_pairs == PAIRS[:5]
    assert translator.meta["skipped_too_long"] == 3 and translator.meta["train_pairs"] == 5
    model = translator.model.__wrapped__
    assert max(model.source_widths) <= 6 and max(model.target_widths) <= 6
    assert translator.architecture == "transformer"
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["meta"]["skipped_too_long"] == 3
    assert doc["max_length"] == 5  # the saved cap: max(2 * 5, 5 + 10) lowered to 6 - 1


def test_the_data_keys_still_apply_beside_max_positions(toy_backend):
    config = transformer_config(max_positions=6)
    config.data.max_source_length = 2
    translator = seq2seq_kit.train(config, data=PAIRS, backend=toy_backend)
    assert translator.train_pairs == PAIRS[:2] and translator.meta["skipped_too_long"] == 6


def test_validation_pairs_too_long_for_the_model_are_skipped_and_logged(
    toy_backend, tmp_path, caplog
):
    valid = tmp_path / "valid.tsv"
    valid.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    config = transformer_config(max_positions=4)
    config.data.valid_fraction, config.data.valid = None, str(valid)
    with caplog.at_level(logging.INFO, logger="seq2seq_kit"):
        translator = seq2seq_kit.train(config, data=PAIRS, backend=toy_backend)
    assert translator.valid_pairs == PAIRS[:3]
    assert "skipped 5 of 8 validation pairs longer than model.max_positions = 4" in caplog.text


def test_no_pair_fits_names_max_positions(toy_backend):
    from seq2seq_kit.errors import DataError

    with pytest.raises(DataError, match=r"all 2 are longer than model.max_positions = 2"):
        seq2seq_kit.train(transformer_config(max_positions=2), data=PAIRS[2:4], backend=toy_backend)


@pytest.fixture
def toy_model(toy_backend, tmp_path):
    out = tmp_path / "toy"
    seq2seq_kit.train(transformer_config(max_positions=6), data=PAIRS, backend=toy_backend, out=out)
    return out


def test_decoding_stops_before_max_positions_and_marks_truncation(toy_model, toy_backend):
    translator = seq2seq_kit.load(toy_model, backend=toy_backend)
    for beam in (1, 3):
        (hyp,) = translator.hypotheses(["aaa"], beam=beam, n_best=1, max_length=100)[0]
        # the stand-in never ends: 5 tokens after BOS fill the 6 positions
        assert hyp.truncated and len(hyp.ids) == 5
    assert translator.decoding_limit(3) == 3 and translator.decoding_limit(100) == 5


def test_an_input_longer_than_max_positions_is_refused_naming_line_and_lengths(
    toy_model, toy_backend, capsys
):
    translator = seq2seq_kit.load(toy_model, backend=toy_backend)
    with pytest.raises(InputTooLongError, match=r"input line 2 has 7 source tokens .* at most 6"):
        translator.translate(["aa", "a" * 7], unknown="replace")
    code = main(["translate", "--model", str(toy_model), "--backend", toy_backend, "a", "a" * 9])
    err = capsys.readouterr().err
    assert code == 2 and "input line 2 has 9 source tokens" in err and "at most 6" in err


def test_evaluate_names_the_data_line_of_a_too_long_source(
    toy_model, toy_backend, tmp_path, capsys
):
    data = tmp_path / "test.tsv"
    data.write_text("a\tb\naaaaaaaa\tbb\n")
    args = ["evaluate", "--model", str(toy_model), "--backend", toy_backend, "--data", str(data)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "test.tsv:2: source has 8 tokens but the model takes at most 6" in err


def test_checkpoint_and_info_carry_the_architecture(toy_model, capsys):
    ckpt = load_checkpoint(toy_model)
    assert ckpt.spec == TransformerSpec(
        ckpt.spec.src_vocab_size, ckpt.spec.tgt_vocab_size, d_model=8, num_heads=2, max_positions=6
    )
    doc = json.loads((toy_model / "model.json").read_text())
    assert doc["spec"]["architecture"] == "transformer"
    assert doc["meta"]["config"]["model"]["architecture"] == "transformer"
    assert main(["info", "--model", str(toy_model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "transformer" and info["spec"]["max_positions"] == 6
    assert info["parameters"] == sum(w.size for w in ckpt.weights.values())
    assert info["backend"] == "toy-transformer" and info["epochs"] == 1
    assert main(["info", "--model", str(toy_model)]) == 0
    assert "architecture: transformer (encoder_layers 2" in capsys.readouterr().out


def test_plot_draws_a_transformers_cross_attention(toy_model, toy_backend, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "plots"
    args = ["plot", "--model", str(toy_model), "--backend", toy_backend, "--input", "aaa"]
    assert main([*args, "--out-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "transformer cross-attention" in out and "5 output x 3 source tokens" in out
    assert (out_dir / "attention.png").stat().st_size > 0
    translator = seq2seq_kit.load(toy_model, backend=toy_backend)
    source, output, weights = translator.attention("aaa")
    np.testing.assert_allclose(weights, np.full((5, 3), 1 / 3), rtol=1e-6)


def test_resume_keeps_the_architecture_and_adam_but_may_change_label_smoothing(
    toy_model, toy_backend, capsys
):
    base = ["train", "--resume", str(toy_model), "--backend", toy_backend, "--no-progress"]
    for extra, key in [
        (["--num-heads", "4"], "model.num_heads is 2 in the saved run but 4 now"),
        (["--architecture", "rnn"], "model.architecture is 'transformer'"),
        (["--adam-beta2", "0.98"], "train.adam_beta2 is 0.999 in the saved run but 0.98 now"),
    ]:
        assert main([*base, "--epochs", "2", *extra]) == 2
        assert key in capsys.readouterr().err
    with pytest.raises(ConfigError, match="model.hidden_size is 8 now but no key of the saved"):
        config = Config.model_validate({"model": {"hidden_size": 8}, "train": {"epochs": 2}})
        seq2seq_kit.train(config, resume=toy_model, backend=toy_backend, data=PAIRS)
    config = Config.model_validate({"train": {"epochs": 2, "label_smoothing": 0.1}})
    translator = seq2seq_kit.train(config, resume=toy_model, backend=toy_backend, data=PAIRS)
    assert translator.model.optimizer.label_smoothing == 0.1
    changed = translator.meta["resumes"][-1]["changed"]
    assert changed == {"train.epochs": [1, 2], "train.label_smoothing": [0.0, 0.1]}


def test_a_real_transformer_trains_decodes_and_plots(tmp_path, capsys):
    """Needs a backend that declares the 'transformer' capability (the NumPy one, when it
    has it); the stand-in's other tests do not depend on it."""
    backend = registry().backends.get("numpy")
    if backend is None or "transformer" not in backend.capabilities:
        pytest.skip("the numpy backend does not declare the 'transformer' capability yet")
    out = tmp_path / "m"
    args = ["train", "--out", str(out), "--architecture", "transformer", "--d-model", "16"]
    args += ["--num-heads", "2", "--ff-size", "32", "--epochs", "30", "--no-progress"]
    assert main([*args, "--max-positions", "12", "--batch-size", "9"]) == 0
    translator = seq2seq_kit.load(out)
    assert translator.architecture == "transformer" and translator.max_length <= 11
    source, output, weights = translator.attention("7")
    assert weights.shape == (len(output), 1)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    if importlib.util.find_spec("matplotlib") is not None:
        assert main(["plot", "--model", str(out), "--input", "7"]) == 0
        assert (out / "attention.png").exists()


def test_spec_methods_pickle_and_a_spec_round_trips():
    import pickle

    spec = TransformerSpec(5, 5, d_model=8, num_heads=2)
    assert pickle.loads(pickle.dumps(TransformerSpec.from_dict))(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec.to_dict))() == spec.to_dict()
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_a_saved_spec_beyond_the_tables_upper_bounds_still_loads():
    # the [model] bounds guard a new run's typos; a model an older version saved may exceed them
    from seq2seq_kit.spec import spec_from_dict

    saved = {"architecture": "transformer", "src_vocab_size": 5, "tgt_vocab_size": 5}
    assert spec_from_dict({**saved, "max_positions": 100_000}).max_positions == 100_000
    with pytest.raises(ValueError, match="max_positions"):
        spec_from_dict({**saved, "max_positions": 1})  # the lower bound is a rule


@pytest.mark.parametrize("architecture", [5, None, ["rnn"]])
def test_an_architecture_that_is_not_a_name_is_unknown(architecture):
    from seq2seq_kit.spec import spec_from_dict

    with pytest.raises(ValueError, match="unknown model architecture"):
        spec_from_dict({"architecture": architecture, "src_vocab_size": 5, "tgt_vocab_size": 5})
