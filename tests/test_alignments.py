"""``[decode] alignments`` and ``replace_unk``: alignments read from attention, ``<unk>``
replaced by the aligned source token (through a phrase table), in the Python API and the
command line (the server's fields: tests/test_serve.py)."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from aligned_tasks import named_pairs, train_named, train_two_digits, two_digit_pairs

import seq2seq_kit
from seq2seq_kit.alignment import argmax_alignment, replace_unknowns, source_texts
from seq2seq_kit.cli import main
from seq2seq_kit.config import Config, DecodeConfig
from seq2seq_kit.decoding import Hypothesis, plan
from seq2seq_kit.errors import CapabilityError, DataError, OptionError
from seq2seq_kit.phrase_table import load_phrase_table, read_phrase_table
from seq2seq_kit.vocab import UNK, Vocabulary


@pytest.fixture(scope="module")
def two_digits_dir(tmp_path_factory):
    return train_two_digits(tmp_path_factory.mktemp("alignments"))


@pytest.fixture(scope="module")
def two_digits(two_digits_dir):
    return seq2seq_kit.load(two_digits_dir)


@pytest.fixture(scope="module")
def named_dir(tmp_path_factory):
    return train_named(tmp_path_factory.mktemp("replace-unk"))


@pytest.fixture(scope="module")
def named(named_dir):
    return seq2seq_kit.load(named_dir)


_NAMED_TOML = """\
[data]
source = "named.tsv"
valid_fraction = 0.0
tokenizer = "word"
tokenizer_options = {min_frequency = 2}
[model]
attention = "general"
embedding_size = 16
[train]
learning_rate = 0.01
epochs = 25
progress = false
[decode]
unknown = "replace"
replace_unk = true
replace_unk_table = "names.tsv"
"""


def _tabled_config(folder):
    """A config file in ``folder`` for the name-copying task (:func:`train_named`'s) whose
    ``[decode]`` saves a phrase table, all its paths relative to the file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "named.tsv").write_text(
        "".join(f"{s}\t{t}\n" for s, t in named_pairs(0, 150, "w")), encoding="utf-8"
    )
    (folder / "w.toml").write_text(_NAMED_TOML, encoding="utf-8")
    return folder / "w.toml"


@pytest.fixture(scope="module")
def tabled_dir(tmp_path_factory):
    """A model trained from :func:`_tabled_config`, its phrase table naming ``Zed90``."""
    config = _tabled_config(tmp_path_factory.mktemp("tabled") / "config")
    (config.parent / "names.tsv").write_text("Zed90\tZoe\n", encoding="utf-8")
    out = config.parent.parent / "model"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    config = Config()
    config.train.progress = False
    config.train.epochs = 2
    out = tmp_path_factory.mktemp("plain") / "digits"
    seq2seq_kit.train(config, out=out)
    return out


@pytest.fixture(scope="module")
def plain(plain_dir):
    return seq2seq_kit.load(plain_dir)


def _word_positions(text: str) -> list[int | None]:
    """Per character of ``text``, the index of the word it belongs to (None: a space)."""
    out, word = [], 0
    for char in text:
        if char == " ":
            out.append(None)
            word += 1
        else:
            out.append(word)
    return out


def test_the_alignment_points_at_the_digit(two_digits):
    sources = [source for source, _ in two_digit_pairs()]
    hyps = [h[0] for h in two_digits.hypotheses(sources, alignments=True)]
    letters = hits = 0
    for source, hyp in zip(sources, hyps, strict=True):
        assert hyp.text == " ".join(seq2seq_kit.datasets.DIGITS[int(d) - 1][1] for d in source)
        assert [j for _, j in hyp.alignment] == list(range(len(hyp.ids)))
        words = _word_positions(hyp.text)
        for word in (0, 1):
            aligned = [i for (i, j) in hyp.alignment if words[j] == word]
            # each word comes from its own digit: most of its letters attend to it
            assert Counter(aligned).most_common(1)[0][0] == word, (source, hyp.alignment)
            letters += len(aligned)
            hits += aligned.count(word)
    assert hits / letters >= 0.95


def test_an_alignment_depends_on_the_source_and_output_alone(two_digits):
    """Every search's hypotheses are aligned by one forced pass: a beam's n-best and
    samples get the alignment greedy decoding's same output gets."""
    sources = ["25", "73", "11"]
    greedy = {
        (s, h[0].text): h[0].alignment
        for s, h in zip(sources, two_digits.hypotheses(sources, alignments=True), strict=True)
    }
    beams = two_digits.hypotheses(sources, beam=4, n_best=4, alignments=True)
    samples = two_digits.hypotheses(
        sources, sampling=True, num_samples=4, seed=3, temperature=2.0, alignments=True
    )
    for source, listed in zip(sources * 2, beams + samples, strict=True):
        assert len(listed) > 1
        for h in listed:
            assert len(h.alignment) == len(h.ids)
            assert all(0 <= i < len(source) for i, _ in h.alignment)
            if (source, h.text) in greedy:
                assert h.alignment == greedy[source, h.text]
    alone = two_digits.hypotheses(["73"], beam=4, n_best=4, alignments=True)[0]
    assert [h.alignment for h in alone] == [h.alignment for h in beams[1]]


def test_alignments_change_nothing_else_and_are_off_by_default(two_digits):
    texts = ["25", "", "8"]
    plain = two_digits.hypotheses(texts, beam=3, n_best=2)
    aligned = two_digits.hypotheses(texts, beam=3, n_best=2, alignments=True)
    assert aligned == plain  # text, ids, score, truncated
    assert all(h.alignment is None for hyps in plain for h in hyps)
    assert aligned[1][0].alignment == ()  # a blank text: an empty output, nothing aligned
    # a prefix's tokens are output tokens too: aligned like the others
    forced = two_digits.hypotheses(["25"], prefix=["two f"], alignments=True)[0][0]
    assert forced.text == "two five" and len(forced.alignment) == len(forced.ids)


def test_without_attention_or_with_an_engine_it_is_refused(plain):
    for name in ("alignments", "replace_unk"):
        with pytest.raises(OptionError, match="no attention") as info:
            plain.hypotheses(["3"], **{name: True})
        assert info.value.option == name
        options = DecodeConfig.model_validate({name: True})
        with pytest.raises(CapabilityError, match="own search") as info:
            plan(options, 10, {"search", "beam"}, "engine", attention=True)
        assert info.value.option == name


def test_a_model_outputs_unk_only_with_replace_unk(named):
    tests = named_pairs(1, 40, "Zed")
    sources = [s for s, _ in tests]
    with pytest.raises(seq2seq_kit.errors.UnknownTokenError):
        named.hypotheses(sources[:1])  # the names are unseen words
    kept = [h[0] for h in named.hypotheses(sources, unknown="replace")]
    assert all(UNK not in h.ids for h in kept)
    assert all("Zed" not in h.text for h in kept)
    replaced = [h[0] for h in named.hypotheses(sources, unknown="replace", replace_unk=True)]
    assert all(h.alignment is None for h in replaced)  # read, not asked for
    assert sum(UNK in h.ids for h in replaced) >= 0.9 * len(tests)
    right = sum(h.text == target for h, (_, target) in zip(replaced, tests, strict=True))
    assert right >= 0.8 * len(tests)


def test_each_unk_becomes_the_source_word_it_is_aligned_to(named):
    tests = named_pairs(2, 30, "Zed")
    sources = [s for s, _ in tests]
    found = named.hypotheses(sources, unknown="replace", replace_unk=True, alignments=True)
    seen = 0
    for source, (h,) in zip(sources, found, strict=True):
        words, out = source.split(), h.text.split()
        assert len(out) == len(h.ids)  # one word per token: replacements are single words
        for (i, j), token in zip(h.alignment, h.ids, strict=True):
            if token == UNK:
                assert out[j] == words[i]
                seen += 1
            else:
                assert out[j] == named.target_vocab.token(token)
    assert seen >= len(tests) * 0.9


def test_a_phrase_table_gives_the_replacement(named, tmp_path):
    tests = named_pairs(1, 20, "Zed")
    sources = [s for s, _ in tests]
    table = tmp_path / "names.tsv"
    table.write_text("Zed0\tZoé Zed\n\nZed3\tthird\n", encoding="utf-8")
    bare = named.translate(sources, unknown="replace", replace_unk=True)
    listed = named.translate(sources, unknown="replace", replace_unk=True, replace_unk_table=table)
    changed = 0
    for before, after in zip(bare, listed, strict=True):
        expected = " ".join({"Zed0": "Zoé Zed", "Zed3": "third"}.get(w, w) for w in before.split())
        assert after == expected
        changed += after != before
    assert changed >= 1
    # turning replace_unk off drops the table with it, as a server request may
    assert named.translate(sources[:2], unknown="replace", replace_unk=False) == named.translate(
        sources[:2], unknown="replace"
    )


def test_replacement_follows_the_alignment_and_the_tokenizers():
    chars = Vocabulary(tuple("abc"), "char")
    hyp = Hypothesis("", (4, UNK, 5, UNK), 0.0, False, alignment=((0, 0), (2, 1), (1, 2), (0, 3)))
    assert replace_unknowns(hyp, ["x", "y", "é"], chars).text == "aébx"
    words = Vocabulary(("one", "two"), "word")
    hyp = Hypothesis("", (UNK, 5), 0.0, False, alignment=((1, 0), (1, 1)))
    assert replace_unknowns(hyp, ["two", "Zoe"], words).text == "Zoe two"
    no_unk = Hypothesis("one", (4,), 0.0, False)
    assert replace_unknowns(no_unk, ["x"], words) is no_unk
    with pytest.raises(ValueError, match="no alignment"):
        replace_unknowns(Hypothesis("", (UNK,), 0.0, False), ["x"], words)
    with pytest.raises(ValueError, match="source has 1 tokens"):
        replace_unknowns(Hypothesis("", (UNK,), 0.0, False, alignment=((3, 0),)), ["x"], words)
    assert source_texts("a  b", Vocabulary(("a", "b"), "word")) == ["a", "b"]
    weights = np.array([[0.1, 0.7, 0.2, 9.0], [0.5, 0.5, 0.0, 9.0], [1, 0, 0, 0]], np.float32)
    # the padding column past the source is never chosen; ties take the first position
    assert argmax_alignment(weights, 2, 3) == ((1, 0), (0, 1))


@pytest.mark.parametrize(
    "content, line, reason",
    [
        ("a\tb\nc\n", 2, "0 TABs"),
        ("a\tb\tc\n", 1, "2 TABs"),
        ("\tb\n", 1, "one token"),
        ("a b\tc\n", 1, "without whitespace"),
        ("a\t \n", 1, "empty target"),
        ("a\tb\n\na\tc\n", 3, r"listed twice \(first on line 1\)"),
        ("a\tb\n\x00\tc\n", 2, "NUL"),
    ],
)
def test_a_bad_phrase_table_line_is_named(tmp_path, content, line, reason):
    path = tmp_path / "table.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=reason) as info:
        read_phrase_table(path)
    assert info.value.path == str(path) and info.value.line == line


def test_phrase_tables_are_read_once_per_version(tmp_path):
    path = tmp_path / "table.tsv"
    with pytest.raises(DataError, match="no such file"):
        load_phrase_table(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty phrase table"):
        load_phrase_table(path)
    path.write_text("ü\tu\n", encoding="utf-8")  # NFC, as the vocabularies read text
    first = load_phrase_table(path)
    assert first.entries == {"ü": "u"} and load_phrase_table(path) is first
    path.write_text("a\tb\nc\td\n", encoding="utf-8")
    assert load_phrase_table(path).entries == {"a": "b", "c": "d"}


def test_a_table_without_replace_unk_is_refused():
    with pytest.raises(ValueError, match="replace_unk_table"):
        DecodeConfig(replace_unk_table="t.tsv")
    assert DecodeConfig(replace_unk=True, replace_unk_table="t.tsv").replace_unk


def test_translate_prints_alignments_as_a_column(two_digits, two_digits_dir, capsys):
    model = str(two_digits_dir)
    assert main(["translate", "--model", model, "--alignments", "25", "", "73"]) == 0
    lines = capsys.readouterr().out.split("\n")
    expected = two_digits.hypotheses(["25", "73"], alignments=True)
    assert lines[0] == "two five\t" + " ".join(f"{i}-{j}" for i, j in expected[0][0].alignment)
    assert lines[1] == "\t"  # a blank input: empty text, no pair
    assert lines[2] == "seven three\t" + " ".join(f"{i}-{j}" for i, j in expected[1][0].alignment)
    assert lines[0].split("\t")[1].startswith("0-0 0-1 0-2")
    assert main(["translate", "--model", model, "--alignments", "--beam", "2", "--n-best", "2",
                 "25"]) == 0  # fmt: skip
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [len(row) for row in rows] == [5, 5] and rows[0][3] == "two five"
    assert rows[0][4] == lines[0].split("\t")[1]
    assert main(["translate", "--model", model, "25"]) == 0
    assert capsys.readouterr().out == "two five\n"


def test_translate_replaces_unk_and_refuses_what_it_cannot(named_dir, plain_dir, tmp_path, capsys):
    model = str(named_dir)
    table = tmp_path / "t.tsv"
    table.write_text("Zed9\tZoe\n", encoding="utf-8")
    source, target = named_pairs(1, 1, "Zed9")[0]
    args = ["translate", "--model", model, "--unknown", "replace", source]
    assert "Zed90" in target
    assert main([*args, "--replace-unk"]) == 0
    assert capsys.readouterr().out == target + "\n"
    assert main([*args, "--replace-unk", "--replace-unk-table", str(table)]) == 0
    assert capsys.readouterr().out == target + "\n"  # Zed90 is not Zed9: not listed
    table.write_text("Zed90\tZoe\n", encoding="utf-8")
    assert main([*args, "--replace-unk", "--replace-unk-table", str(table)]) == 0
    assert capsys.readouterr().out == target.replace("Zed90", "Zoe") + "\n"
    # a table without --replace-unk, a bad table, a model without attention: exit 2
    assert main([*args, "--replace-unk-table", str(table)]) == 2
    assert "--replace-unk" in capsys.readouterr().err
    table.write_text("Zed90 Zoe\n", encoding="utf-8")
    assert main([*args, "--replace-unk", "--replace-unk-table", str(table)]) == 2
    assert f"{table}:1:" in capsys.readouterr().err
    assert main(["translate", "--model", str(plain_dir), "--alignments", "3"]) == 2
    assert "--alignments" in capsys.readouterr().err


def test_evaluate_scores_the_replaced_text(named_dir, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in named_pairs(1, 20, "Zed")))
    args = ["evaluate", "--model", str(named_dir), "--data", str(data), "--json"]
    assert main([*args, "--unknown", "replace"]) == 0

    assert json.loads(capsys.readouterr().out)["exact_match"] == 0.0
    assert main([*args, "--unknown", "replace", "--replace-unk"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] >= 0.8
    with pytest.raises(SystemExit) as info:  # no alignment is printed: no flag for them
        main([*args, "--alignments"])
    assert info.value.code == 2


def test_decoded_validation_scores_the_models_own_outputs(two_digits):
    from seq2seq_kit.decoded_validation import decoded_validation

    config = Config()
    config.train.valid_metrics = ["exact_match"]
    config.decode.alignments = config.decode.replace_unk = True
    pairs = two_digit_pairs()[:5]
    ids = [two_digits.source_vocab.encode(s) for s, _ in pairs]
    search = decoded_validation(config, two_digits, pairs, ids).search
    assert not search.aligns and not search.controls.unk


class _Peaked:
    """A decoder whose attention at step ``t`` of row ``k`` peaks at a position drawn from
    its fed token and ``t`` (ties and padding included): what the alignment reads, without
    a network. Its log-probabilities are never read by the forced pass."""

    def __init__(self, width: int):
        self.width = width

    def encode(self, src_ids, src_lengths):
        return (np.asarray(src_lengths), 0, None)

    def step(self, prev_ids, state):
        lengths, t, _ = state
        return np.zeros((len(prev_ids), 1), np.float32), (lengths, t + 1, np.asarray(prev_ids))

    def attention(self, state):
        lengths, t, fed = state
        weights = np.zeros((len(lengths), self.width), np.float32)
        for k, n in enumerate(lengths):
            weights[k, (int(fed[k]) * 7 + t * 3) % n] = 1.0
            weights[k, (int(fed[k]) + t) % n] = 1.0  # a tie: the lower position wins
            weights[k, n:] = 2.0  # past the source: never chosen
        return weights


def test_alignments_hold_one_int_per_output_token_in_memory():
    """The forced pass keeps each step's argmax, never a hypothesis's weights [outputs,
    sources]: here these would take 80 x 201 x 1000 float32 (64 MB); the alignments, read
    in chunks of hypotheses, equal the argmax of the full weights."""
    import tracemalloc

    from seq2seq_kit.alignment import align
    from seq2seq_kit.decoding import forced_attention

    rng = np.random.default_rng(0)
    width, rows = 1000, 16
    lengths = rng.integers(1, width + 1, size=rows).astype(np.int32)
    lengths[0] = width
    src = np.full((rows, width), 4, np.int32)
    found = [
        [
            Hypothesis("", tuple(int(i) for i in rng.integers(4, 30, size=n)), 0.0, bool(n % 2))
            for n in rng.integers(0, 201, size=5)
        ]
        for _ in range(rows)
    ]
    found[0][0] = Hypothesis("", tuple(range(4, 204)), 0.0, False)
    model = _Peaked(width)
    tracemalloc.start()
    try:
        aligned = align(model, src, lengths, found, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB held while aligning"
    for row, hyps in enumerate(found):
        index = [row] * len(hyps)
        weights = forced_attention(model, src[index], lengths[index], hyps, 1)
        for hyp, got, w in zip(hyps, aligned[row], weights, strict=True):
            assert got.alignment == argmax_alignment(w, len(hyp.ids), int(lengths[row]))
            assert got.ids == hyp.ids and got.alignment is not None


def test_banning_unk_is_explained_with_and_without_replace_unk():
    vocab = Vocabulary(tuple("ab"), "char")
    reasons = {}
    for replace_unk in (False, True):
        options = DecodeConfig(banned_tokens=["a", "<unk>"], replace_unk=replace_unk)
        with pytest.raises(OptionError) as info:
            plan(options, 10, {"beam"}, "numpy", vocab, attention=True)
        assert info.value.option == "banned_tokens[1]"
        reasons[replace_unk] = str(info.value)
    assert "UNK is never output unless decode.replace_unk is on" in reasons[False]
    # with replace_unk the model outputs UNK: the refusal says so, and how to keep it out
    assert "never output" not in reasons[True]
    assert "decode.replace_unk lets the model output UNK" in reasons[True]
    assert "turn decode.replace_unk off" in reasons[True]


@pytest.mark.parametrize(
    "table, reason", [(None, "no such file"), ("Zed90 Zoe\n", "names.tsv:1: 0 TABs")]
)
def test_a_config_files_table_is_relative_to_it_and_checked_before_training(
    tmp_path, monkeypatch, capsys, table, reason
):
    config = _tabled_config(tmp_path / "config")
    if table is not None:
        (config.parent / "names.tsv").write_text(table, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the table is the config file's neighbour
    out = tmp_path / "model"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(config.parent / "names.tsv") in err and reason in err
    assert not out.exists()  # refused before anything was trained or written


def test_a_model_keeps_its_phrase_table_wherever_it_is_moved(tabled_dir, tmp_path, capsys):
    from seq2seq_kit.checkpoint import PHRASE_TABLE_FILE
    from seq2seq_kit.errors import CheckpointError

    doc = json.loads((tabled_dir / "model.json").read_text(encoding="utf-8"))
    assert doc["meta"]["config"]["decode"]["replace_unk_table"] == PHRASE_TABLE_FILE
    assert doc["phrase_table"]["file"] == PHRASE_TABLE_FILE
    # the config's folder, its table with it, is gone; the model directory is moved
    (tabled_dir.parent / "config" / "names.tsv").unlink()
    moved = tmp_path / "moved"
    shutil.copytree(tabled_dir, moved)
    source, target = named_pairs(1, 1, "Zed9")[0]
    assert main(["translate", "--model", str(moved), source]) == 0
    assert capsys.readouterr().out == target.replace("Zed90", "Zoe") + "\n"
    # saved again elsewhere, the table goes with the model
    again = seq2seq_kit.load(moved)
    again.save(tmp_path / "again")
    assert (tmp_path / "again" / PHRASE_TABLE_FILE).read_bytes() == b"Zed90\tZoe\n"
    assert seq2seq_kit.load(tmp_path / "again").translate([source]) == [
        target.replace("Zed90", "Zoe")
    ]
    # the copy is checked as the tokenizer files are
    (moved / PHRASE_TABLE_FILE).write_text("Zed90\tZed\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"{PHRASE_TABLE_FILE}: corrupted"):
        seq2seq_kit.load(moved)


def test_a_table_changed_while_held_is_not_saved(tabled_dir, tmp_path):
    from seq2seq_kit.errors import CheckpointError

    model = seq2seq_kit.load(shutil.copytree(tabled_dir, tmp_path / "model"))
    (tmp_path / "model" / "replace-unk-table.tsv").write_text("Zed90\tZed\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="changed since it was read"):
        model.save(tmp_path / "copy")
    assert not (tmp_path / "copy" / "model.json").exists()


def test_a_table_given_as_an_option_is_relative_to_the_working_directory(
    tabled_dir, tmp_path, monkeypatch
):
    model = seq2seq_kit.load(tabled_dir)
    source, target = named_pairs(1, 1, "Zed9")[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.tsv").write_text("Zed90\tOther\n", encoding="utf-8")
    given = model.translate([source], replace_unk_table="other.tsv")
    assert given == [target.replace("Zed90", "Other")]
    assert model.translate([source]) == [target.replace("Zed90", "Zoe")]  # the model's own


def test_a_resumed_run_keeps_the_saved_table(tabled_dir, tmp_path):
    from seq2seq_kit.checkpoint import PHRASE_TABLE_FILE

    (tabled_dir.parent / "config" / "names.tsv").unlink(missing_ok=True)  # the copy serves
    out = tmp_path / "resumed"
    assert main(["train", "--resume", str(tabled_dir), "--out", str(out), "--epochs", "26"]) == 0
    assert (out / PHRASE_TABLE_FILE).read_bytes() == (tabled_dir / PHRASE_TABLE_FILE).read_bytes()
    decode = seq2seq_kit.load(out).meta["config"]["decode"]
    assert decode["replace_unk_table"] == PHRASE_TABLE_FILE
