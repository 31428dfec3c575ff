"""Mixed-precision training throughput on num2words: bf16 against fp32, the num2words RNN
and the Transformer of bench_transformer, one thread, on the CPU, in the PyTorch backend
(default) or another that declares ``mixed_precision`` (``--backend keras``).

    python benchmarks/bench_precision.py [--backend torch] [--steps N] [--warmup N]
        [--threads N] [--device cpu] [--precision bf16]

Each model starts from ``seq2seq_kit.weights.initial_weights(spec, 0)`` and trains on the
same num2words batches of 64 pairs (``fixtures.warmup_and_timed``; the fixtures are made
first when missing): untimed warm-up updates, then ``--steps`` timed ones. Prints target
tokens (real ``tgt_out`` positions) per second of ``model.train_step``, the ratio to fp32,
and the training loss after the same updates (the mean over the last ten, and the first),
so that one sees the mixed-precision run still learns as the fp32 one does.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import fixtures
from bench_transformer import MODEL as TRANSFORMER


def train(backend, spec, weights, runtime, warm, timed) -> dict[str, Any]:
    """Tokens/s and losses of one model trained from ``weights`` as ``runtime`` says."""
    from seq2seq_kit.plugins import get_backend

    model = get_backend(backend).create(spec, seed=0, runtime=runtime)
    model.set_weights(weights)
    losses = [model.train_step([b]) for b in warm]
    start = time.perf_counter()
    losses += [model.train_step([b]) for b in timed]
    seconds = time.perf_counter() - start
    tokens = sum(b.num_target_tokens for b in timed)
    return {
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
        "first_loss": losses[0],
        "last_losses": sum(losses[-10:]) / len(losses[-10:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="timed updates (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    args = parser.parse_args()

    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.runtime import Runtime
    from seq2seq_kit.spec import ModelSpec, TransformerSpec
    from seq2seq_kit.weights import initial_weights

    if not fixtures.NUM2WORDS_MODEL_DIR.exists():
        fixtures.prepare()
    ckpt = load_checkpoint(fixtures.NUM2WORDS_MODEL_DIR)
    vocab = (len(ckpt.source_vocab), len(ckpt.target_vocab))
    specs = {
        "RNN (LSTM 256)": ModelSpec(*vocab, **fixtures.NUM2WORDS_MODEL),
        "Transformer (2+2 x 256)": TransformerSpec(*vocab, **TRANSFORMER),
    }
    warm, timed = fixtures.warmup_and_timed(args.warmup, args.steps)
    print(
        f"{args.backend}, {args.threads} thread(s), device {args.device}, {args.steps} timed "
        f"updates of 64 num2words pairs after {len(warm)} warm-up ones"
    )
    print("| model | precision | target tok/s | vs fp32 | first loss | mean of last 10 losses |")
    print("|---|---|---|---|---|---|")
    for name, spec in specs.items():
        weights = initial_weights(spec, 0)
        base = None
        for precision in ("fp32", args.precision):
            runtime = Runtime(threads=args.threads, device=args.device, precision=precision)
            m = train(args.backend, spec, weights, runtime, warm, timed)
            base = base or m["tokens_per_second"]
            print(
                f"| {name} | {precision} | {m['tokens_per_second']:.0f} | "
                f"{m['tokens_per_second'] / base:.2f}x | {m['first_loss']:.3f} | "
                f"{m['last_losses']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
