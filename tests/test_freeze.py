"""Frozen weights: ``OptimizerSpec.frozen``, the ``[train] freeze`` groups, and position
tables (``positions = "table"``) that training never changes."""

from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import load_file

import seq2seq_kit
from seq2seq_kit.architectures import (
    FREEZE_GROUPS,
    TransformerConfig,
    frozen_weights,
    sinusoidal_positions,
)
from seq2seq_kit.backend import Backend
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.config.train import TrainConfig
from seq2seq_kit.errors import BackendError, ConfigError
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec, OptimizerSpec, TransformerSpec
from seq2seq_kit.training import optimizer_spec
from seq2seq_kit.weights import weight_shapes

TRANSFORMER = TransformerSpec(
    11, 13, encoder_layers=1, decoder_layers=1, d_model=8, num_heads=2, ff_size=12
)
RNN = ModelSpec(11, 13, hidden_size=6, embedding_size=5, attention="dot")


def test_frozen_names_are_kept_sorted_once_and_a_lone_string_is_refused():
    spec = OptimizerSpec(frozen=["b", "a", "b"])
    assert spec.frozen == ("a", "b") and spec == OptimizerSpec(frozen=("b", "a"))
    with pytest.raises(ValueError, match="sequence of weight names"):
        OptimizerSpec(frozen="encoder.embedding")


def test_create_refuses_unknown_names_and_a_backend_without_freeze():
    numpy = get_backend("numpy")
    with pytest.raises(ValueError, match=r"\['encoder.nothing'\]"):
        numpy.create(RNN, optimizer=OptimizerSpec(frozen=("encoder.nothing",)))
    plain = Backend("plain", "1", numpy.capabilities - {"freeze"}, numpy.build)
    plain.create(RNN)  # nothing frozen: no capability needed
    with pytest.raises(BackendError, match="'freeze'"):
        plain.create(RNN, optimizer=OptimizerSpec(frozen=("encoder.embedding",)))


@pytest.mark.parametrize("spec", [RNN, TRANSFORMER], ids=["rnn", "transformer"])
def test_each_group_is_the_names_of_its_part_of_the_layout(spec):
    names = set(weight_shapes(spec))
    encoder = {n for n in names if n.startswith("encoder.")}
    assert set(frozen_weights(spec, ["encoder"])) == encoder
    assert set(frozen_weights(spec, ["decoder"])) == names - encoder
    assert set(frozen_weights(spec, ["embeddings"])) == {"encoder.embedding", "decoder.embedding"}
    assert set(frozen_weights(spec, ["output"])) == {"decoder.output.kernel", "decoder.output.bias"}
    assert frozen_weights(spec) == ()


def test_positions_group_and_tables():
    learned = replace(TRANSFORMER, positions="learned")
    positions = ("decoder.positions", "encoder.positions")
    assert frozen_weights(learned, ["positions"]) == positions
    # a table is frozen whatever the groups say
    assert frozen_weights(replace(TRANSFORMER, positions="table")) == positions
    with pytest.raises(ValueError, match="'positions'.*sinusoidal"):
        frozen_weights(TRANSFORMER, ["positions"])
    with pytest.raises(ValueError, match="'positions' names no weight of this rnn model"):
        frozen_weights(RNN, ["positions"])
    with pytest.raises(ValueError, match="one-hot"):
        frozen_weights(replace(RNN, embedding_size=0), ["embeddings"])
    with pytest.raises(ValueError, match="every weight"):
        frozen_weights(RNN, ["encoder", "decoder"])


def test_a_table_starts_as_the_sinusoids_and_keeps_the_layout_of_learned():
    table, learned = (replace(TRANSFORMER, positions=p) for p in ("table", "learned"))
    assert weight_shapes(table) == weight_shapes(learned)
    weights = seq2seq_kit.weights.initial_weights(table, 3)
    expected = sinusoidal_positions(TRANSFORMER.max_positions, TRANSFORMER.d_model)
    np.testing.assert_array_equal(weights["encoder.positions"], expected)
    others = seq2seq_kit.weights.initial_weights(learned, 3)
    assert all(np.array_equal(others[n], w) for n, w in weights.items() if "positions" not in n)


def test_the_config_key_orders_groups_and_the_flag_takes_a_list():
    assert TrainConfig(freeze=["output", "encoder", "output"]).freeze == ["encoder", "output"]
    with pytest.raises(ValueError, match="'encoder', 'decoder'"):
        TrainConfig(freeze=["everything"])
    cfg = Config()
    cfg.train.freeze = ["embeddings"]
    assert optimizer_spec(cfg, RNN).frozen == ("decoder.embedding", "encoder.embedding")
    assert optimizer_spec(cfg).frozen == ()
    cfg.train.freeze = ["positions"]
    with pytest.raises(ConfigError, match="train.freeze"):
        optimizer_spec(cfg, RNN)


def test_the_cli_flag_refuses_an_unknown_group(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--out", str(tmp_path / "m"), "--freeze", "encoder,bogus"])
    assert exit.value.code == 2
    assert "--freeze: 'encoder,bogus': Input should be 'encoder'" in capsys.readouterr().err


def small(model: bool = True, **train) -> Config:
    """A short run on digits; with ``model``, a small RNN with embeddings."""
    cfg = Config()
    cfg.train.progress = False
    cfg.train.epochs, cfg.train.batch_size = 3, 3
    if model:
        cfg.model.hidden_size, cfg.model.embedding_size = 16, 8
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "digits"
    seq2seq_kit.train(small(), out=out)
    return out


def test_fine_tuning_with_a_frozen_encoder_changes_only_the_rest(source, tmp_path):
    out = tmp_path / "ft"
    assert main(["train", "--init-from", str(source), "--out", str(out), "--data", "digits",
                 "--epochs", "2", "--freeze", "encoder", "--no-progress"]) == 0  # fmt: skip
    before, after = (load_file(p / "weights.safetensors") for p in (source, out))
    for name, value in after.items():
        same = np.array_equal(value, before[name])
        assert same == name.startswith("encoder."), name
    state = load_file(out / "optimizer.safetensors")
    assert not any(state[k].any() for k in state if k[2:].startswith("encoder."))
    assert load_checkpoint(out).meta["config"]["train"]["freeze"] == ["encoder"]


def test_a_group_the_model_lacks_is_refused(source, tmp_path):
    cfg = small(epochs=1, init_from=str(source), freeze=["positions"])
    with pytest.raises(ConfigError, match="train.freeze.*'positions'"):
        seq2seq_kit.train(cfg, out=tmp_path / "ft")
    assert FREEZE_GROUPS  # the groups a message lists


def transformer_config(**train) -> Config:
    cfg = small(**train)
    cfg.model = TransformerConfig(
        encoder_layers=1, decoder_layers=1, d_model=8, num_heads=2, ff_size=16,
        dropout=0.0, positions="table", max_positions=16,
    )  # fmt: skip
    return cfg


def positions_set_to(value: str, init_from) -> Config:
    """A fine-tuning config setting ``model.positions`` alone."""
    cfg = small(False, epochs=1, init_from=str(init_from))
    cfg.model = TransformerConfig.model_validate(
        {"architecture": "transformer", "positions": value}
    )
    return cfg


def test_a_position_table_never_trains_unless_fine_tuning_makes_it_learned(tmp_path):
    table = sinusoidal_positions(16, 8)
    first = tmp_path / "table"
    seq2seq_kit.train(transformer_config(), out=first)
    weights = load_file(first / "weights.safetensors")
    for side in ("encoder", "decoder"):
        np.testing.assert_array_equal(weights[f"{side}.positions"], table)
    # fine-tuning keeps it fixed; model.positions = "learned" trains it from here on
    kept, learned = tmp_path / "kept", tmp_path / "learned"
    seq2seq_kit.train(small(False, epochs=1, init_from=str(first)), out=kept)
    kept_table = load_file(kept / "weights.safetensors")["encoder.positions"]
    np.testing.assert_array_equal(kept_table, table)
    seq2seq_kit.train(positions_set_to("learned", first), out=learned)
    assert load_checkpoint(learned).spec.positions == "learned"
    trained = load_file(learned / "weights.safetensors")["encoder.positions"]
    assert not np.array_equal(trained, table)
    with pytest.raises(ConfigError, match="model.positions is 'table' in the model"):
        seq2seq_kit.train(positions_set_to("sinusoidal", first), out=tmp_path / "refused")
