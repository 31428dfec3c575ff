"""Speed of the PyTorch backend's Transformer at one thread; prints figures, asserts nothing.

The model: ``TransformerSpec`` with 2 encoder and 2 decoder layers, ``d_model`` 64, 4 heads,
feed-forward 256, dropout 0.1, pre-norm, sinusoidal positions; default Adam (lr 1e-3).

- digits: the seed task (nine digit -> word pairs, batches of 2, shuffled per epoch);
  trains until greedy decoding gets all nine words right, checked every 10 epochs.
Wall-clock and CPU-time figures are both printed (on a busy machine the CPU time is the
steadier one).

- train: target tokens/s of ``train_step`` on num2words batches of 64 pairs (the first
  ``steps * 64`` pairs of ``num2words`` seed 0, shuffled and bucketed by length as the
  num2words example trains), character vocabularies; after 5 untimed warm-up steps.
- decode: greedy decoding (:func:`seq2seq_kit.decoding.greedy`) of num2words sources, in
  batches of 64 and one sentence at a time; output tokens/s and sentences/s.

Run from the repository root (``--d-model 256 --ff-size 1024`` for the size of
``benchmarks/bench_transformer.py``)::

    OMP_NUM_THREADS=1 python backends/torch/benchmarks/transformer_speed.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from seq2seq_kit import decoding
from seq2seq_kit.batching import batches, make_batch
from seq2seq_kit.data import load_dataset
from seq2seq_kit.plugins import registry
from seq2seq_kit.spec import TransformerSpec
from seq2seq_kit.vocab import Vocabulary

MODEL = dict(encoder_layers=2, decoder_layers=2, d_model=64, num_heads=4, ff_size=256, dropout=0.1)
#: Overrides of MODEL from the command line (``--d-model``, ``--ff-size``).
SIZE: dict[str, int] = {}


def build(src: Vocabulary, tgt: Vocabulary, seed: int = 0):
    spec = TransformerSpec(len(src), len(tgt), **{**MODEL, **SIZE})
    return registry().backends["torch"].create(spec, seed=seed)


def digits(seed: int, max_epochs: int) -> None:
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    numbers = [str(i) for i in range(1, 10)]
    src, tgt = Vocabulary.build(numbers), Vocabulary.build(words)
    sources, targets = [src.encode(s) for s in numbers], [tgt.encode(t) for t in words]
    model, rng = build(src, tgt, seed), np.random.default_rng(seed)
    every = make_batch(sources, targets)
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        for batch in batches(sources, targets, 2, rng=rng):
            model.train_step(batch)
        if epoch % 10 == 0:
            hyps = decoding.greedy(model, every.src_ids, every.src_lengths, tgt, 10)
            right = sum(tgt.decode(h.ids) == w for h, w in zip(hyps, words, strict=True))
            if right == 9:
                break
    seconds = time.perf_counter() - start
    print(
        f"digits seed {seed}: {right}/9 after {epoch} epochs, {seconds:.1f} s, "
        f"loss {model.loss(every):.4f}"
    )


def num2words(count: int) -> tuple[Vocabulary, Vocabulary, list, list]:
    pairs = load_dataset("num2words", low=0, high=10**6, count=count, seed=0).pairs
    src = Vocabulary.build(s for s, _ in pairs)
    tgt = Vocabulary.build(t for _, t in pairs)
    return src, tgt, [src.encode(s) for s, _ in pairs], [tgt.encode(t) for _, t in pairs]


def train(steps: int) -> None:
    src, tgt, sources, targets = num2words((steps + 5) * 64)
    model = build(src, tgt)
    rng = np.random.default_rng(0)
    todo = list(batches(sources, targets, 64, rng=rng, bucket=True))
    for batch in todo[:5]:
        model.train_step(batch)
    timed = todo[5 : 5 + steps]
    tokens = sum(int(b.tgt_mask.sum()) for b in timed)
    start, cpu = time.perf_counter(), time.process_time()
    for batch in timed:
        model.train_step(batch)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"train: {len(timed)} steps of 64 pairs, {tokens} target tokens in {seconds:.2f} s "
        f"({cpu:.2f} s CPU): {tokens / seconds:,.0f} target tokens/s "
        f"({tokens / cpu:,.0f} per CPU second), {seconds / len(timed) * 1e3:.1f} ms/step"
    )


def decode(sentences: int, train_steps: int) -> None:
    src, tgt, sources, targets = num2words(max(sentences, train_steps * 64))
    model = build(src, tgt)
    rng = np.random.default_rng(0)
    # A little training so that the model stops at EOS as a trained one would.
    for batch in list(batches(sources, targets, 64, rng=rng, bucket=True))[:train_steps]:
        model.train_step(batch)
    sources = sources[:sentences]
    max_length = max(len(t) for t in targets) + 5
    for size in (64, 1):
        start, cpu, produced = time.perf_counter(), time.process_time(), 0
        for first in range(0, len(sources), size):
            chunk = make_batch(sources[first : first + size], [[]] * len(sources[first:][:size]))
            hyps = decoding.greedy(model, chunk.src_ids, chunk.src_lengths, tgt, max_length)
            produced += sum(len(h.ids) + 1 for h in hyps)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"greedy, batch {size}: {len(sources)} sentences, {produced} tokens in "
            f"{seconds:.2f} s ({cpu:.2f} s CPU): {produced / seconds:,.0f} tokens/s "
            f"({produced / cpu:,.0f} per CPU second), {len(sources) / seconds:,.1f} sentences/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--train-steps", type=int, default=50)
    parser.add_argument("--sentences", type=int, default=640)
    parser.add_argument("--skip", nargs="*", default=[], choices=["digits", "train", "decode"])
    parser.add_argument("--d-model", type=int, default=MODEL["d_model"])
    parser.add_argument("--ff-size", type=int, default=MODEL["ff_size"])
    args = parser.parse_args()
    SIZE.update(d_model=args.d_model, ff_size=args.ff_size)
    torch.set_num_threads(1)
    if "digits" not in args.skip:
        for seed in args.seeds:
            digits(seed, args.max_epochs)
    if "train" not in args.skip:
        train(args.train_steps)
    if "decode" not in args.skip:
        decode(args.sentences, 200)


if __name__ == "__main__":
    main()
