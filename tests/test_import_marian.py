"""Importing a Hugging Face MarianMTModel (OPUS-MT): the import computes what transformers
computes. The source model is built here, without a network: a small MarianMTModel trained
for a few hundred updates on Tatoeba pairs (a random model repeats one token whatever the
input, which would let a wrong import pass), two SentencePiece models and a joint
vocabulary, saved as save_pretrained and MarianTokenizer save them."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from seq2seq_kit.cli import main  # noqa: E402
from seq2seq_kit.errors import ModelImportError  # noqa: E402
from seq2seq_kit.importers import import_model  # noqa: E402
from seq2seq_kit.importers.marian import PAD_BIAS, read_marian  # noqa: E402
from seq2seq_kit.plugins import registry  # noqa: E402
from seq2seq_kit.translator import load  # noqa: E402

# MarianTokenizer's advice to install sacremoses: its punctuation normaliser is never applied
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

TATOEBA = Path(__file__).resolve().parent / "data" / "tatoeba-eng-fra-3000.tsv"
SENTENCES = ["I see.", "Come here.", "Tom is tall.", "I like cats.", "We lost."]
UPDATES = 300


def _pairs() -> list[tuple[str, str]]:
    rows = TATOEBA.read_text(encoding="utf-8").splitlines()
    return [tuple(row.split("\t")[:2]) for row in rows]


def _train_spm(texts: list[str], size: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=size,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )  # Marian's own: unigram, nmt_nfkc normalisation, <unk> <s> </s>
    return model.getvalue()


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    """A MarianMTModel directory, trained briefly: 2+2 layers, d_model 64, swish, scaled,
    tied and shared embeddings, a non-zero final_logits_bias."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    pairs = _pairs()
    folder = tmp_path_factory.mktemp("opus-mt-en-fr")
    source, target = (_train_spm([p[i] for p in pairs], 300) for i in (0, 1))
    (folder / "source.spm").write_bytes(source)
    (folder / "target.spm").write_bytes(target)
    pieces: set[str] = set()
    for proto in (source, target):
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(proto)
        pieces |= {sp.IdToPiece(i) for i in range(sp.GetPieceSize()) if not sp.IsControl(i)}
    pieces -= {"<unk>"}
    ordered = ["</s>", "<unk>", ">>fra<<", *sorted(pieces), "<pad>"]
    vocab = {piece: i for i, piece in enumerate(ordered)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(
        vocab_size=len(vocab),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=64,
        activation_function="swish",
        scale_embedding=True,
        dropout=0.1,
        pad_token_id=pad,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
    )
    model = transformers.MarianMTModel(config)
    model.final_logits_bias.normal_(0.0, 0.5)
    tokenizer = _tokenizer(folder)
    sources = tokenizer([s for s, _ in pairs])["input_ids"]
    targets = tokenizer(text_target=[t for _, t in pairs])["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    model.train()
    try:
        for _ in range(UPDATES):
            rows = rng.integers(0, len(pairs), 32)
            src = _padded([sources[i] for i in rows], pad)
            labels = _padded([targets[i] for i in rows], -100)
            loss = model(input_ids=src, attention_mask=src != pad, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 4.0, loss.item()
    model.eval()
    model.save_pretrained(folder)  # safetensors
    return folder


def _padded(rows: list[list[int]], pad: int):
    out = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def _tokenizer(folder: Path):
    return transformers.MarianTokenizer(
        source_spm=str(folder / "source.spm"),
        target_spm=str(folder / "target.spm"),
        vocab=str(folder / "vocab.json"),
    )


@pytest.fixture(scope="module")
def hf_model(marian):
    return transformers.MarianMTModel.from_pretrained(marian).eval()


@pytest.fixture(scope="module")
def imported(marian, tmp_path_factory) -> Path:
    return import_model("marian", marian, tmp_path_factory.mktemp("imported") / "model")


def _marian_ids(imported_dir: Path, marian_dir: Path) -> np.ndarray:
    """Marian's id of each of our ids (our PAD: -1)."""
    vocab = json.loads((marian_dir / "vocab.json").read_text(encoding="utf-8"))
    ours = load(imported_dir, backend="numpy").target_vocab
    ids = [-1] + [vocab[name] for name in ("<pad>", "</s>", "<unk>")]
    ids += [vocab.get(token, vocab["</s>"]) for token in ours.tokens]  # the source end: </s>
    return np.array(ids)


def test_the_ids_of_a_text_are_marian_tokenizers(marian, imported):
    tokenizer = _tokenizer(marian)
    to_marian = _marian_ids(imported, marian)
    translator = load(imported, backend="numpy")
    texts = [*SENTENCES, ">>fra<< Hello, Tom!", "Ça alors !"]
    for text in texts:
        ours = translator.source_vocab.encode(text, unknown="replace")
        assert to_marian[ours].tolist() == tokenizer(text)["input_ids"], text
    for text in ("Ça alors !", "Je comprends."):
        ours = translator.target_vocab.encode(text, unknown="replace")
        theirs = tokenizer(text_target=text)["input_ids"]
        assert to_marian[ours].tolist() + [0] == theirs, text


def _backends(imported: Path, stepwise: bool = False):
    """Every installed backend that loads the imported model; ``stepwise``: only those the
    core's decoder drives step by step (an engine with its own ``search`` gives neither
    decoder states nor teacher-forced log-probabilities)."""
    loaded = []
    for name, backend in sorted(registry().backends.items()):
        if stepwise and "search" in backend.capabilities:
            print(f"backend {name} skipped: it decodes with its own search")
            continue
        loaded.append((name, load(imported, backend=name)))  # every backend runs it
    assert {"numpy", "torch"} <= {name for name, _ in loaded}
    return loaded


def test_teacher_forced_log_probs_equal_transformers_on_every_backend(marian, imported, hf_model):
    tokenizer = _tokenizer(marian)
    pairs = [("I see.", "Je comprends."), ("Tom is tall.", "Tom est grand."), ("Hi.", "Salut !")]
    enc = tokenizer(
        [s for s, _ in pairs], text_target=[t for _, t in pairs], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = hf_model(**enc).logits
    theirs = torch.log_softmax(logits.double(), -1).numpy()
    to_marian = _marian_ids(imported, marian)
    for name, translator in _backends(imported, stepwise=True):
        vocab = translator.source_vocab
        sources = [vocab.encode(s, unknown="replace") for s, _ in pairs]
        targets = [translator.target_vocab.encode(t, unknown="replace") for _, t in pairs]
        width = max(map(len, sources))
        src = np.full((len(pairs), width), vocab.pad_id, np.int32)
        for row, ids in enumerate(sources):
            src[row, : len(ids)] = ids
        state = translator.model.encode(src, np.array([len(s) for s in sources], np.int32))
        steps = max(map(len, targets)) + 1
        prev = np.full(len(pairs), vocab.bos_id, np.int32)
        for t in range(steps):
            log_probs, state = translator.model.step(prev, state)
            for row, ids in enumerate(targets):
                if t > len(ids):
                    continue
                # ours but PAD and the source end, in Marian's order
                np.testing.assert_allclose(
                    log_probs[row, 1:-1],
                    theirs[row, t, to_marian[1:-1]],
                    atol=1e-4,
                    err_msg=f"backend {name}, pair {row}, step {t}",
                )
                assert log_probs[row, 0] < PAD_BIAS / 2 and log_probs[row, -1] < PAD_BIAS / 2
            prev = np.array(
                [ids[t] if t < len(ids) else 2 for ids in targets], np.int32
            )  # teacher forcing; EOS past a target's end


def test_greedy_ids_equal_generate(marian, imported, hf_model):
    tokenizer = _tokenizer(marian)
    to_marian = _marian_ids(imported, marian)
    pad = json.loads((marian / "vocab.json").read_text(encoding="utf-8"))["<pad>"]
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        # our decoding never outputs BOS (Marian's pad): neither may transformers'
        out = hf_model.generate(
            **enc, num_beams=1, do_sample=False, max_new_tokens=30, bad_words_ids=[[pad]]
        )
    expected = []
    for row in out.tolist():
        ids = row[1:]  # the decoder start
        expected.append(ids[: ids.index(0)] if 0 in ids else ids)
    outputs = set()
    for name, translator in _backends(imported):
        # text in, as translate takes it: the tokenizer, the search (the core's, or an
        # engine's own) and the id mapping together
        hyps = [best for best, *_ in translator.hypotheses(SENTENCES, beam=1, max_length=30)]
        got = [to_marian[list(h.ids)].tolist() for h in hyps]
        assert got == expected, name
        outputs |= {tuple(ids) for ids in got}
    assert len(outputs) > 1  # the model learned something: not one output for every input


def test_beam_4_finds_generates_best_hypothesis(marian, imported, hf_model):
    # One length normalisation on both sides: none (transformers' length_penalty = 0, our
    # GNMT alpha = 0), so a hypothesis scores the sum of its tokens' log-probabilities.
    from seq2seq_kit.decoding import beam_search

    tokenizer = _tokenizer(marian)
    to_marian = _marian_ids(imported, marian)
    pad = json.loads((marian / "vocab.json").read_text(encoding="utf-8"))["<pad>"]
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = hf_model.generate(
            **enc,
            num_beams=4,
            length_penalty=0.0,
            early_stopping="never",
            do_sample=False,
            max_new_tokens=30,
            bad_words_ids=[[pad]],
        )
    expected = []
    for row in out.tolist():
        ids = row[1:]
        expected.append(ids[: ids.index(0)] if 0 in ids else ids)
    translator = load(imported, backend="numpy")
    vocab = translator.source_vocab
    sources = [vocab.encode(s, unknown="replace") for s in SENTENCES]
    src = np.full((len(sources), max(map(len, sources))), vocab.pad_id, np.int32)
    for row, ids in enumerate(sources):
        src[row, : len(ids)] = ids
    lengths = np.array([len(s) for s in sources], np.int32)
    found = beam_search(translator.model, src, lengths, translator.target_vocab, 30, beam=4)
    assert [to_marian[list(h[0].ids)].tolist() for h in found] == expected


def test_cli_import_info_translate_beam(marian, tmp_path, capsys):
    out = tmp_path / "fr"
    assert main(["import", "--format", "marian", "--from", str(marian), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert main(["info", "--model", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "marian model from" in shown and "transformer" in shown
    assert main(["translate", "--model", str(out), "--backend", "numpy", "I see."]) == 0
    greedy_out = capsys.readouterr().out.strip()
    assert greedy_out
    translator = load(out, backend="numpy")
    hyps = translator.hypotheses(["I see."], beam=3, n_best=2)[0]
    assert len(hyps) == 2 and hyps[0].score >= hyps[1].score
    # an existing model directory is replaced only with --overwrite
    args = ["import", "--format", "marian", "--from", str(marian), "--out", str(out)]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def _copy(marian: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(marian, copy)
    return copy


def test_a_pickle_only_directory_is_refused_without_unpickling(marian, tmp_path, capsys):
    copy = _copy(marian, tmp_path)
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    out = tmp_path / "out"
    args = ["import", "--format", "marian", "--from", str(copy), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.bin" in err and "save_pretrained" in err and "Traceback" not in err
    assert not out.exists()


def test_sharded_weights_import_as_the_single_file(marian, hf_model, imported, tmp_path):
    copy = _copy(marian, tmp_path)
    (copy / "model.safetensors").unlink()
    hf_model.save_pretrained(copy, max_shard_size="200KB")  # shards and their index
    assert len(list(copy.glob("model-*-of-*.safetensors"))) > 1
    assert not (copy / "model.safetensors").exists()
    sharded = import_model("marian", copy, tmp_path / "sharded")
    ours, theirs = (load(path, backend="numpy").model.get_weights() for path in (imported, sharded))
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        np.testing.assert_array_equal(value, theirs[name], err_msg=name)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("normalize_before", True, "normalize_before"),
        ("decoder_vocab_size", 7, "decoder_vocab_size"),
        ("share_encoder_decoder_embeddings", False, "share_encoder_decoder_embeddings"),
        ("scale_embedding", False, "scale_embedding"),
        ("activation_function", "tanh", "activation_function"),
        ("activation_dropout", 0.1, "activation_dropout"),
        ("rope_theta", 10000.0, "rope_theta"),
    ],
)
def test_unsupported_config_values_are_refused_by_name(marian, tmp_path, key, value, named):
    copy = _copy(marian, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config[key] = value
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelImportError, match=named):
        read_marian(copy)


def test_unknown_format_and_unknown_tensor_are_refused(marian, tmp_path):
    with pytest.raises(ModelImportError, match="unknown import format 'fairseq'"):
        import_model("fairseq", marian, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    copy = _copy(marian, tmp_path)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(copy / "model.safetensors"))
    tensors["model.encoder.layernorm_embedding.weight"] = np.ones(64, np.float32)
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ModelImportError, match="layernorm_embedding"):
        read_marian(copy)


def test_fine_tuning_the_import_lowers_its_loss_and_it_loads_on_every_backend(imported, tmp_path):
    from seq2seq_kit import train
    from seq2seq_kit.config import Config
    from seq2seq_kit.trainer import evaluate

    pairs = _pairs()[-160:]  # the longest pairs: the least learned
    data = tmp_path / "new.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    cfg = Config()
    cfg.data.source, cfg.data.valid_fraction = str(data), 0.0
    cfg.train.epochs, cfg.train.batch_size, cfg.train.progress = 2, 16, False
    cfg.train.init_from, cfg.decode.unknown = str(imported), "replace"
    tuned = train(cfg, out=tmp_path / "tuned")

    def loss(translator) -> float:
        vocab, target = translator.source_vocab, translator.target_vocab
        sources = [vocab.encode(s, unknown="replace") for s, _ in pairs]
        targets = [target.encode(t, unknown="replace") for _, t in pairs]
        return evaluate(translator.model, sources, targets)[0]

    assert loss(tuned) < loss(load(imported, backend="numpy"))
    losses = {
        name: loss(translator) for name, translator in _backends(tmp_path / "tuned", stepwise=True)
    }
    assert max(losses.values()) - min(losses.values()) < 1e-4, losses
    meta = json.loads((tmp_path / "tuned" / "model.json").read_text())["meta"]
    assert meta["init_from"]["path"] == str(imported)
    # Marian's sinusoids are a position table: fine-tuning left them as imported
    before, after = (load(path, backend="numpy") for path in (imported, tmp_path / "tuned"))
    assert after.model.spec.positions == "table"
    old, new = before.model.get_weights(), after.model.get_weights()
    for side in ("encoder", "decoder"):
        np.testing.assert_array_equal(new[f"{side}.positions"], old[f"{side}.positions"])
    assert not np.array_equal(new["encoder.embedding"], old["encoder.embedding"])
