"""The preprocessed corpus: written once, trained from as training from the text would."""

import json

import numpy as np
import pytest
from forged import forge

import seq2seq_kit
from seq2seq_kit.batching import batches
from seq2seq_kit.checkpoint import load_checkpoint
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config
from seq2seq_kit.corpus import is_corpus, open_corpus, preprocess
from seq2seq_kit.corpus import writer as corpus_writer
from seq2seq_kit.errors import ConfigError, DataError
from seq2seq_kit.integrity import file_sha256


def tiny(source="num2words", epochs=3, **train):
    cfg = Config()
    cfg.data.source = source
    if source == "num2words":
        cfg.data.options = {"low": 0, "high": 300, "count": 80, "seed": 1}
        cfg.data.valid_fraction = 0.25
    cfg.model.hidden_size, cfg.model.embedding_size = 8, 4
    cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate = epochs, 8, 0.01
    cfg.train.progress, cfg.train.save_seconds = False, 0.0
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def from_corpus(cfg, path):
    """``cfg`` training from the corpus at ``path``: only data.source changes."""
    cfg = cfg.model_copy(deep=True)
    cfg.data = type(cfg.data)(source=str(path))
    return cfg


def assert_same_training(a, b):
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy"):
            assert x[key] == y[key], (x["epoch"], key)
    for key, value in a.model.get_weights().items():
        np.testing.assert_array_equal(value, b.model.get_weights()[key], err_msg=key)


@pytest.mark.parametrize(
    "train",
    [{}, {"bucket": True, "batch_type": "tokens", "batch_size": 40}],
    ids=["plain", "tokens"],
)
def test_training_from_the_corpus_is_training_from_the_text(tmp_path, train):
    # Same split, vocabularies, ids and pair order, so the same shuffles and batches: the
    # NumPy backend gives the same losses and weights to the last bit.
    cfg = tiny(**train)
    preprocess(cfg, tmp_path / "corpus")
    direct = seq2seq_kit.train(cfg)
    stored = seq2seq_kit.train(from_corpus(cfg, tmp_path / "corpus"))
    assert_same_training(direct, stored)
    assert stored.source_vocab == direct.source_vocab
    assert stored.target_vocab == direct.target_vocab
    assert stored.max_length == direct.max_length
    assert stored.meta["train_pairs"] == direct.meta["train_pairs"] == 60
    assert stored.meta["valid_pairs"] == direct.meta["valid_pairs"] == 20
    assert list(stored.valid_pairs) == list(direct.valid_pairs)
    assert stored.meta["config"]["data"]["source"] == str((tmp_path / "corpus").resolve())
    assert stored.meta["config"]["data"]["valid_fraction"] == 0.25


def test_a_tsv_with_a_validation_file_word_tokens_and_length_caps(tmp_path):
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rows = [(str(n), " ".join(words[int(c)] for c in str(n))) for n in range(0, 4000, 37)]
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in rows[:90]))
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in rows[90:]))
    cfg = tiny(str(tmp_path / "train.tsv"))
    cfg.data.valid = str(tmp_path / "valid.tsv")
    cfg.data.target_tokenizer, cfg.data.max_target_length = "word", 3
    preprocess(cfg, tmp_path / "corpus")
    direct = seq2seq_kit.train(cfg)
    stored = seq2seq_kit.train(from_corpus(cfg, tmp_path / "corpus"))
    assert_same_training(direct, stored)
    skipped = sum(len(t.split()) > 3 for _, t in rows[:90])
    assert skipped > 0
    assert stored.meta["skipped_too_long"] == direct.meta["skipped_too_long"] == skipped
    doc = open_corpus(tmp_path / "corpus").doc
    assert doc["counts"] == {"train": 90 - skipped, "valid": len(rows) - 90}
    assert stored.target_vocab.tokenizer_name == "word"


def test_digits_have_no_validation_split_and_rows_read_back(tmp_path):
    cfg = tiny("digits")
    preprocess(cfg, tmp_path / "c")
    opened = open_corpus(tmp_path / "c")
    sources, targets = opened.splits["train"]
    assert len(opened.splits["valid"][0]) == 0
    assert [opened.vocabs[0].decode(sources[i]) for i in range(9)] == list("123456789")
    assert opened.vocabs[1].decode(targets[-1]) == "nine"
    assert sources[0].dtype == np.int32
    np.testing.assert_array_equal(targets.lengths, [len(t) for t in targets])
    # the batches of lists and of the corpus rows are the same, bucketed or not
    lists = [list(map(list, side)) for side in (sources, targets)]
    for bucket in (False, True):
        a = list(batches(sources, targets, 4, rng=np.random.default_rng(3), bucket=bucket))
        b = list(batches(*lists, 4, rng=np.random.default_rng(3), bucket=bucket))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.src_ids, y.src_ids)
            np.testing.assert_array_equal(x.tgt_out, y.tgt_out)


def test_resume_from_a_corpus_trained_model(tmp_path):
    cfg = tiny(epochs=4)
    preprocess(cfg, tmp_path / "corpus")
    straight = seq2seq_kit.train(from_corpus(cfg, tmp_path / "corpus"), out=tmp_path / "a")
    short = from_corpus(cfg, tmp_path / "corpus")
    short.train.epochs = 2
    seq2seq_kit.train(short, out=tmp_path / "b")
    resumed = seq2seq_kit.train(resume=tmp_path / "b", epochs=4)
    assert_same_training(straight, resumed)
    assert (
        load_checkpoint(tmp_path / "b").meta["corpus"]["sha256"]
        == open_corpus(tmp_path / "corpus").fingerprint
    )


def test_a_resumed_run_refuses_a_corpus_made_again_from_other_data(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{n}\t{n * 2}\n" for n in range(40)))
    cfg = tiny(str(tsv), epochs=1)
    preprocess(cfg, tmp_path / "corpus")
    seq2seq_kit.train(from_corpus(cfg, tmp_path / "corpus"), out=tmp_path / "m")
    tsv.write_text("".join(f"{n}\t{n * 3}\n" for n in range(40)))  # same config, other data
    preprocess(cfg, tmp_path / "corpus", overwrite=True)
    with pytest.raises(DataError, match="differ from the saved run"):
        seq2seq_kit.train(resume=tmp_path / "m", epochs=2)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        (
            "train.target.bin",
            lambda p: p.write_bytes(p.read_bytes()[:-2]),
            "corrupted or truncated",
        ),
        (
            "train.source.idx",
            lambda p: p.write_bytes(p.read_bytes()[:-4]),
            "corrupted or truncated",
        ),
        ("valid.source.bin", lambda p: p.unlink(), "missing"),
        ("corpus.json", lambda p: p.write_text("{"), "not valid JSON"),
        ("corpus.json", lambda p: p.unlink(), "missing"),
    ],
)
def test_a_damaged_corpus_is_refused_naming_the_file(tmp_path, name, damage, message):
    preprocess(tiny(), tmp_path / "c")
    damage(tmp_path / "c" / name)
    with pytest.raises(DataError, match=message) as info:
        open_corpus(tmp_path / "c")
    assert str(tmp_path / "c" / name) in str(info.value)


def test_a_file_corpus_json_does_not_vouch_for_is_refused(tmp_path):
    preprocess(tiny(), tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "corpus.json").read_text())
    del doc["files"]["valid.target.idx"]
    forge(tmp_path / "c" / "corpus.json", doc)
    with pytest.raises(DataError, match="corpus.json: malformed .*no SHA-256 for valid.target.idx"):
        open_corpus(tmp_path / "c")


def test_an_index_that_disagrees_with_its_file_is_refused_even_with_matching_hashes(tmp_path):
    # corpus.json re-hashed after the damage: the structural checks still catch it
    preprocess(tiny(), tmp_path / "c")
    idx = tmp_path / "c" / "train.source.idx"
    idx.write_bytes(idx.read_bytes()[:-4])
    doc = json.loads((tmp_path / "c" / "corpus.json").read_text())
    doc["files"]["train.source.idx"] = file_sha256(idx)
    forge(tmp_path / "c" / "corpus.json", doc)
    with pytest.raises(DataError, match="train.source.idx: holds 60 rows"):
        open_corpus(tmp_path / "c")


def test_an_interrupted_preprocess_leaves_no_corpus(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_writer, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        preprocess(tiny(), tmp_path / "c")
    assert not is_corpus(tmp_path / "c") and not (tmp_path / "c").exists()
    assert list(tmp_path.iterdir()) == []  # the half-written folder is removed
    with pytest.raises(DataError):
        open_corpus(tmp_path / "c")


def test_a_folder_without_a_corpus_is_named_as_such(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="folder/corpus.json: missing; .* no preprocessed corpus"):
        seq2seq_kit.train(tiny(str(tmp_path / "folder")))


def test_an_interrupted_overwrite_keeps_the_old_corpus(tmp_path, monkeypatch):
    preprocess(tiny(), tmp_path / "c")
    before = open_corpus(tmp_path / "c").fingerprint
    monkeypatch.setattr(corpus_writer, "_finish", lambda *a, **k: (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        preprocess(tiny(), tmp_path / "c", overwrite=True)
    assert open_corpus(tmp_path / "c").fingerprint == before


def test_keys_the_corpus_fixes_are_refused_naming_them(tmp_path):
    preprocess(tiny(), tmp_path / "c")
    cfg = from_corpus(tiny(), tmp_path / "c")
    cfg.data.tokenizer, cfg.data.limit = "word", 10
    with pytest.raises(ConfigError) as info:
        seq2seq_kit.train(cfg)
    assert "data.tokenizer is 'word' but the corpus was made with 'char'" in str(info.value)
    assert "data.limit is 10" in str(info.value)
    # the same values as the corpus's are no conflict
    same = from_corpus(tiny(epochs=1), tmp_path / "c")
    same.data.valid_fraction = 0.25
    assert seq2seq_kit.train(same).meta["valid_pairs"] == 20


def test_cli_preprocess_then_train(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert main(["preprocess", "--data", "digits", "--out", out]) == 0
    assert "9 training and 0 validation pairs" in capsys.readouterr().out
    # an existing corpus is replaced only with --overwrite; a foreign folder never
    assert main(["preprocess", "--data", "digits", "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["preprocess", "--data", "digits", "--out", out, "--overwrite"]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["preprocess", "--data", "digits", "--out", str(tmp_path / "other")]) == 2
    assert "no corpus" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert main(["preprocess", "--data", out, "--out", str(tmp_path / "again")]) == 2
    assert "already a preprocessed corpus" in capsys.readouterr().err
    args = ["train", "--data", out, "--out", str(tmp_path / "m"), "--epochs", "2"]
    assert main([*args, "--hidden-size", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "saved model" in printed
    # its pairs are ids: no exact match against references decoded from them
    assert "exact match: not measured for a model trained from a corpus" in printed
    assert " -> " not in printed
    assert main(["train", "--data", out, "--out", str(tmp_path / "m2"), "--tokenizer", "word"]) == 2
    assert "data.tokenizer" in capsys.readouterr().err


def test_a_transformer_skips_pairs_over_max_positions_as_from_the_text(tmp_path):
    cfg = tiny(epochs=2)
    cfg.model = {"architecture": "transformer", "d_model": 8, "num_heads": 2, "ff_size": 8}
    cfg.model.encoder_layers = cfg.model.decoder_layers = 1
    cfg.model.max_positions = 20  # num2words' longer spellings do not fit
    preprocess(cfg, tmp_path / "c")
    direct = seq2seq_kit.train(cfg)
    stored = seq2seq_kit.train(from_corpus(cfg, tmp_path / "c"))
    assert direct.meta["skipped_too_long"] > 0
    for key in ("skipped_too_long", "train_pairs", "valid_pairs"):
        assert stored.meta[key] == direct.meta[key], key
    assert stored.max_length == direct.max_length == 19
    assert stored.target_vocab == direct.target_vocab  # the skipped pairs had no rarer letter
    assert_same_training(direct, stored)


@pytest.mark.parametrize("shared", [False, True], ids=["two", "shared"])
def test_a_learned_tokenizer_is_trained_as_from_the_text(tmp_path, shared):
    cfg = tiny(epochs=2)
    cfg.data.tokenizer, cfg.data.tokenizer_options = "sentencepiece", {"vocab_size": 32}
    cfg.data.shared_vocabulary = shared
    preprocess(cfg, tmp_path / "c")
    names = {p.name for p in (tmp_path / "c").glob("*.model")}
    assert names == (
        {"source-sentencepiece.model"}
        if shared
        else {"source-sentencepiece.model", "target-sentencepiece.model"}
    )
    direct = seq2seq_kit.train(cfg)
    stored = seq2seq_kit.train(from_corpus(cfg, tmp_path / "c"))
    assert stored.source_vocab == direct.source_vocab
    assert stored.target_vocab == direct.target_vocab
    assert (stored.source_vocab is stored.target_vocab) is shared
    assert_same_training(direct, stored)
    assert stored.translate(["123"]) == direct.translate(["123"])


def test_a_learned_tokenizer_trains_on_a_sample_of_a_large_corpus(tmp_path, monkeypatch):
    import seq2seq_kit.prepare as api

    seen = []
    train_tokenizers = api.train_tokenizers

    def spy(cfg, pairs, saved):
        seen.append(list(pairs))
        return train_tokenizers(cfg, pairs, saved)

    monkeypatch.setattr(api, "train_tokenizers", spy)
    monkeypatch.setattr(corpus_writer, "SAMPLE_PAIRS", 50)
    cfg = tiny(epochs=1)
    cfg.data.tokenizer, cfg.data.tokenizer_options = "sentencepiece", {"vocab_size": 25}
    preprocess(cfg, tmp_path / "c")
    sample, training = seen[0], list(seq2seq_kit.train(cfg).train_pairs)
    assert len(sample) == 50 and len(set(sample)) == 50 and set(sample) <= set(training)
    assert sample != training[:50]  # a sample of all 60, not the first 50
    assert seq2seq_kit.train(from_corpus(cfg, tmp_path / "c")).meta["train_pairs"] == 60


def test_a_tsv_split_by_valid_fraction_keeps_a_source_on_one_side(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    # every source twice (alternative translations): both land on the same side
    tsv.write_text("".join(f"{n}\t{n * k}\n" for n in range(50) for k in (2, 3)))
    cfg = tiny(str(tsv), epochs=1)
    cfg.data.valid_fraction = 0.2
    preprocess(cfg, tmp_path / "c")
    direct = seq2seq_kit.train(cfg)
    stored = seq2seq_kit.train(from_corpus(cfg, tmp_path / "c"))
    assert list(stored.valid_pairs) == list(direct.valid_pairs)
    assert list(stored.train_pairs) == list(direct.train_pairs)
    assert len(stored.valid_pairs) == 20
    assert not {s for s, _ in stored.valid_pairs} & {s for s, _ in stored.train_pairs}
    assert_same_training(direct, stored)


def test_the_files_follow_the_documented_layout(tmp_path):
    # what another tool reads with numpy.memmap, from the module documentation alone
    preprocess(tiny(), tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "corpus.json").read_text())
    rows = open_corpus(tmp_path / "c").splits["train"][1]
    idx = (tmp_path / "c" / "train.target.idx").read_bytes()
    n = int.from_bytes(idx[8:16], "little")
    assert idx[:8] == b"S2SKIDX1" and n == doc["counts"]["train"] == len(rows)
    offsets = np.frombuffer(idx, dtype="<i8", count=n + 1, offset=16)
    lengths = np.frombuffer(idx, dtype="<i4", count=n, offset=16 + 8 * (n + 1))
    ids = np.memmap(tmp_path / "c" / "train.target.bin", dtype=doc["dtypes"]["target"], mode="r")
    np.testing.assert_array_equal(np.diff(offsets), lengths)
    for i in (0, 17, n - 1):
        np.testing.assert_array_equal(ids[offsets[i] : offsets[i + 1]], rows[i])
