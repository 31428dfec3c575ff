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
