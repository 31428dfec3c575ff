import pytest

from seq2seq_kit.config import load_config, resolve_backend
from seq2seq_kit.errors import ConfigError


def test_defaults_are_the_seed_notebook():
    cfg = load_config(None)
    assert cfg.model.hidden_size == 32 and cfg.model.embedding_size == 0
    assert cfg.train.batch_size == 2 and cfg.train.epochs == 300
    assert cfg.train.learning_rate == 1e-3 and cfg.data.source == "digits"


def test_file_values(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('backend = "torch"\n[model]\nhidden_size = 64\n[data]\noptions = {count = 5}\n')
    cfg = load_config(f)
    assert cfg.backend == "torch" and cfg.model.hidden_size == 64
    assert cfg.data.options == {"count": 5}


def test_precedence_flag_env_file_default(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('backend = "torch"\n')
    cfg = load_config(f)
    monkeypatch.delenv("SEQ2SEQ_KIT_BACKEND", raising=False)
    assert resolve_backend(None, load_config(None)) == "numpy"
    assert resolve_backend(None, cfg) == "torch"
    monkeypatch.setenv("SEQ2SEQ_KIT_BACKEND", "keras")
    assert resolve_backend(None, cfg) == "keras"
    assert resolve_backend("numpy", cfg) == "numpy"


def test_errors_name_file_and_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[model]\nhiden_size = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: model\.hiden_size"):
        load_config(f)
    f.write_text("[train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(f)
    f.write_text("[train\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: .*line 1"):
        load_config(f)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.toml")


def test_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "pairs.tsv").write_text("1\tone\n2\ttwo\n")
    (folder / "c.toml").write_text(
        '[data]\nsource = "pairs.tsv"\nvalid = "pairs.tsv"\n[train]\nepochs = 2\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../experiment/c.toml")
    assert cfg.data.source == str(folder / "pairs.tsv") == cfg.data.valid
    # dataset names are not paths
    (folder / "d.toml").write_text('[data]\nsource = "num2words"\n')
    assert load_config(folder / "d.toml").data.source == "num2words"


def test_the_example_configs_load_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.chdir(tmp_path)
    tatoeba = load_config(examples / "tatoeba-eng-fra.toml").data.source
    assert tatoeba == str(examples.parent.parent / "shared" / "data" / "tatoeba-eng-fra.tsv")
    for path in examples.glob("*.toml"):
        load_config(path)


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_config_without_architecture_is_the_rnn_it_always_was(tmp_path):
    from seq2seq_kit.config import Config, RNNConfig, explicit_keys

    cfg = load_config(write(tmp_path, "[model]\nhidden_size = 16\ncell = 'gru'\n"))
    assert isinstance(cfg.model, RNNConfig) and cfg.model.architecture == "rnn"
    assert explicit_keys(cfg) == {"model": {"hidden_size": 16, "cell": "gru"}}
    # a saved run's config (model.json meta) from before the choice validates the same way
    saved = cfg.model_dump(mode="json")
    del saved["model"]["architecture"]
    assert Config.model_validate(saved) == cfg


def test_a_transformer_config_reads_every_key(tmp_path):
    from seq2seq_kit.config import TransformerConfig

    cfg = load_config(
        write(
            tmp_path,
            "[data]\nshared_vocabulary = true\n"
            "[model]\narchitecture = 'transformer'\nencoder_layers = 3\ndecoder_layers = 1\n"
            "d_model = 48\nnum_heads = 6\nff_size = 96\ndropout = 0.3\n"
            "attention_dropout = 0.1\nactivation = 'gelu'\nlayer_norm = 'post'\n"
            "positions = 'learned'\nmax_positions = 40\ntie_output_embeddings = true\n"
            "share_embeddings = true\n",
        )
    )
    assert cfg.model == TransformerConfig(
        encoder_layers=3,
        decoder_layers=1,
        d_model=48,
        num_heads=6,
        ff_size=96,
        dropout=0.3,
        attention_dropout=0.1,
        activation="gelu",
        layer_norm="post",
        positions="learned",
        max_positions=40,
        tie_output_embeddings=True,
        share_embeddings=True,
    )


@pytest.mark.parametrize(
    "model, message",
    [
        (
            "num_heads = 2",
            "model.num_heads: a key of architecture 'transformer', but the "
            "model's architecture is 'rnn'",
        ),
        (
            "architecture = 'rnn'\nd_model = 8",
            "model.d_model: a key of architecture "
            "'transformer', but the model's architecture is 'rnn'",
        ),
        (
            "architecture = 'transformer'\ncell = 'gru'",
            "model.cell: a key of architecture "
            "'rnn', but the model's architecture is 'transformer'",
        ),
        ("architecture = 'transformer'\nnum_heads = 5", "num_heads (5) must divide d_model (64)"),
        (
            "architecture = 'transformer'\nd_model = 6\nnum_heads = 4",
            "num_heads (4) must divide d_model (6)",
        ),
        (
            "architecture = 'transformer'\nshare_embeddings = true",
            "model.share_embeddings = true needs one vocabulary for both sides: set [data] "
            "shared_vocabulary = true",
        ),
        ("architecture = 'cnn'", "model: architecture must be one of ['rnn', 'transformer']"),
        (
            "architecture = 'transformer'\nmax_positions = 1",
            "model.max_positions: Input should be greater than or equal to 2",
        ),
        (
            "architecture = 'transformer'\nactivation = 'tanh'",
            "model.activation: Input should be 'relu', 'gelu' or 'swish'",
        ),
        ("architecture = 'transformer'\nhiden = 1", "model.hiden: Extra inputs"),
    ],
)
def test_model_mistakes_name_the_key_and_the_architecture(tmp_path, model, message):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, f"[model]\n{model}\n"))
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "train, ok",
    [
        ("label_smoothing = 0.0", True),
        ("label_smoothing = 0.99", True),
        ("label_smoothing = 1.0", False),
        ("label_smoothing = -0.1", False),
        ("adam_beta1 = 0.0", True),
        ("adam_beta1 = 1.0", False),
        ("adam_beta2 = 0.98", True),
        ("adam_beta2 = 1.5", False),
        ("adam_epsilon = 1e-9", True),
        ("adam_epsilon = 0.0", False),
        ("adam_epsilon = nan", False),
    ],
)
def test_label_smoothing_and_adam_keys_have_their_bounds(tmp_path, train, ok):
    path = write(tmp_path, f"[train]\n{train}\n")
    if ok:
        key, value = (part.strip() for part in train.split("="))
        assert getattr(load_config(path).train, key) == float(value)
    else:
        with pytest.raises(ConfigError, match=rf"train\.{train.split()[0]}"):
            load_config(path)


def test_new_train_keys_default_to_the_optimizer_spec():
    from seq2seq_kit.spec import OptimizerSpec

    train, spec = load_config(None).train, OptimizerSpec()
    assert (train.label_smoothing, train.adam_beta1, train.adam_beta2, train.adam_epsilon) == (
        spec.label_smoothing,
        spec.beta1,
        spec.beta2,
        spec.epsilon,
    )


def test_resumable_keys_leave_the_model_and_adam_fixed():
    from seq2seq_kit.config import RESUMABLE, section_models

    assert "train.label_smoothing" in RESUMABLE
    assert not {"train.adam_beta1", "train.adam_beta2", "train.adam_epsilon"} & RESUMABLE
    model_keys = {f"model.{k}" for m in section_models("model") for k in m.model_fields}
    assert "model.architecture" in model_keys and not model_keys & RESUMABLE


@pytest.mark.parametrize(
    ("value", "read"), [("true", True), ("false", False), ('"never"', "never"), ("2", 2.0)]
)
def test_early_stopping_takes_hugging_face_s_rules_or_a_patience(tmp_path, value, read):
    path = tmp_path / "c.toml"
    path.write_text(f"[decode]\nearly_stopping = {value}\n")
    assert load_config(path).decode.early_stopping == read


@pytest.mark.parametrize("value", ['"true"', "0", "-1", "101", '"always"'])
def test_a_bad_early_stopping_is_one_error_naming_its_forms(tmp_path, value):
    path = tmp_path / "c.toml"
    path.write_text(f"[decode]\nearly_stopping = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert "decode.early_stopping: Input should be true, false, 'never' or a patience" in message
    assert message.count("decode.early_stopping") == 1  # not one error per form
