"""Inputs shared by the benchmarks of one run, made once by :func:`prepare` (in a
subprocess, with the NumPy backend) and read by every backend and reference:

- ``digits-model/``: the seed configuration trained on the nine digits (checked 9/9); the
  digits decoding benchmarks load it into each backend (any backend loads any model).
- ``num2words-100000.tsv``: 100,000 distinct numbers in [0, 10^6) and their English
  spelling (``seq2seq_kit``'s ``num2words`` dataset, seed 0); kept between runs.
- ``num2words-model/``: a num2words-shaped model with its initial (random, seeded) weights:
  LSTM, hidden 256, embedding 64, no attention, character vocabularies of the file above.

The num2words model shape, shared by the training-throughput, decoding and memory
benchmarks and the plain PyTorch reference, is :data:`NUM2WORDS_MODEL`.
"""

from __future__ import annotations

import json
from typing import Any

from _common import WORK

NUM2WORDS_PAIRS = 100_000
NUM2WORDS_TSV = WORK / f"num2words-{NUM2WORDS_PAIRS}.tsv"
DIGITS_MODEL = WORK / "digits-model"
NUM2WORDS_MODEL_DIR = WORK / "num2words-model"
#: Architecture of every num2words benchmark (``ModelSpec`` keywords besides vocabularies).
NUM2WORDS_MODEL = {"hidden_size": 256, "embedding_size": 64, "cell": "lstm", "attention": "none"}
BATCH_SIZE = 64
NINE = [str(d) for d in range(1, 10)]


def prepare() -> dict[str, Any]:
    """Make the fixtures (the num2words file only when missing); returns their paths and
    facts about them."""
    import seq2seq_kit
    from seq2seq_kit.api import Translator, default_max_length
    from seq2seq_kit.config import Config
    from seq2seq_kit.data import load_dataset
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.spec import ModelSpec
    from seq2seq_kit.vocab import Vocabulary

    WORK.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.train.progress = False
    digits = seq2seq_kit.train(config, backend="numpy", out=DIGITS_MODEL)
    outputs = digits.translate(NINE)
    expected = [t for _, t in load_dataset("digits").pairs]

    if not NUM2WORDS_TSV.exists():
        pairs = load_dataset("num2words", low=0, high=10**6, count=NUM2WORDS_PAIRS, seed=0).pairs
        tmp = NUM2WORDS_TSV.with_suffix(".tmp")
        tmp.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
        tmp.replace(NUM2WORDS_TSV)
    pairs = num2words_pairs()
    source_vocab = Vocabulary.build(s for s, _ in pairs)
    target_vocab = Vocabulary.build(t for _, t in pairs)
    spec = ModelSpec(len(source_vocab), len(target_vocab), **NUM2WORDS_MODEL)
    model = get_backend("numpy").create(spec, seed=0)
    max_length = default_max_length([target_vocab.encode(t) for _, t in pairs])
    Translator(model, source_vocab, target_vocab, backend="numpy", max_length=max_length).save(
        NUM2WORDS_MODEL_DIR
    )
    return {
        "digits_model": str(DIGITS_MODEL),
        "digits_exact": sum(o == e for o, e in zip(outputs, expected, strict=True)),
        "num2words_tsv": str(NUM2WORDS_TSV),
        "num2words_model": str(NUM2WORDS_MODEL_DIR),
        "num2words_spec": spec.to_dict(),
        "num2words_max_length": max_length,
    }


def num2words_pairs(limit: int | None = None) -> list[tuple[str, str]]:
    from seq2seq_kit.data import read_tsv

    return read_tsv(NUM2WORDS_TSV, limit)


def num2words_sources(count: int) -> tuple[Any, Any]:
    """The first ``count`` num2words sources as int32 [count, S] ids and [count] lengths,
    in the vocabulary of the num2words model (the decoding benchmarks' inputs)."""
    import numpy as np

    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.vocab import pad

    vocab = load_checkpoint(NUM2WORDS_MODEL_DIR).source_vocab
    ids = [vocab.encode(s) for s, _ in num2words_pairs(count)]
    return pad(ids), np.array([len(i) for i in ids], dtype=np.int32)


def train_batches(count: int, seed: int = 0) -> list[Any]:
    """``count`` training batches of :data:`BATCH_SIZE` num2words pairs (the first
    ``count * BATCH_SIZE`` pairs, shuffled by ``seed`` and bucketed by length as the
    num2words example config trains), as :class:`seq2seq_kit.batching.Batch` objects."""
    import numpy as np

    from seq2seq_kit.batching import batches
    from seq2seq_kit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(NUM2WORDS_MODEL_DIR)
    pairs = num2words_pairs(count * BATCH_SIZE)
    src = [ckpt.source_vocab.encode(s) for s, _ in pairs]
    tgt = [ckpt.target_vocab.encode(t) for _, t in pairs]
    rng = np.random.default_rng(seed)
    return list(batches(src, tgt, BATCH_SIZE, rng=rng, bucket=True))


if __name__ == "__main__":
    print(json.dumps(prepare(), indent=2))


def warmup_and_timed(warmup: int, steps: int) -> tuple[list[Any], list[Any]]:
    """Training batches for a throughput measurement: ``steps`` timed batches (see
    :func:`train_batches`) and the untimed warm-up ones: ``warmup`` others, then one timed
    batch of each distinct padded shape, so that a one-off compilation per batch shape
    (the JAX backend compiles each) falls in the warm-up, as it would in the first of many
    epochs."""
    batches = train_batches(warmup + steps)
    timed = batches[warmup:]
    shapes = {(b.src_ids.shape, b.tgt_in.shape): b for b in reversed(timed)}
    return batches[:warmup] + list(shapes.values()), timed


def train_num2words(model: dict[str, Any], out: Any, seconds: float) -> Any:
    """Train ``model`` (``[model]`` options) with the torch backend for ``seconds`` on
    20,000 num2words pairs (batch 64, learning rate 0.002) and save it at ``out``, once:
    an existing model there is kept. Returns ``out``."""
    from pathlib import Path

    from seq2seq_kit import api
    from seq2seq_kit.config import Config

    if (Path(out) / "model.json").exists():
        return out
    config = Config.model_validate(
        {
            "model": model,
            "data": {
                "source": "num2words",
                "options": {"low": 0, "high": 10**6, "count": 20_000, "seed": 0},
            },
            "train": {
                "epochs": 1000,
                "batch_size": 64,
                "learning_rate": 0.002,
                "max_time": seconds,
                "progress": False,
            },
        }
    )
    api.train(config, backend="torch", out=out)
    return out
