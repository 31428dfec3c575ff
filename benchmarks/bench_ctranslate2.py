"""CTranslate2 against our fastest decoding backend on the same Transformer weights.

A num2words Transformer (:data:`MODEL`: 2 + 2 layers, d_model 128 in 4 heads,
feed-forward 512, pre-norm, sinusoidal positions) is trained by the torch backend for
``--train-seconds`` on 20,000 num2words pairs from [0, 10^6) and saved (kept under
``results/work/`` for later runs). It is then loaded into each backend with one intra-op
thread and decodes ``--sentences`` other num2words sources, batch 64, greedy and beam 5
(length penalty 0, n-best 1), through ``Translator.hypotheses``: text in, hypotheses out.

Figures: sentences per second and target tokens per second (output tokens plus EOS), the
median of ``--repeats`` timed calls after one untimed warm-up call; agreement, the share of
outputs whose ids equal the NumPy reference backend's (the core's decoder loop), and, for
CTranslate2, its speed over the fastest of the other backends. ``ctranslate2 (plain)`` is
``ctranslate2.Translator.translate_batch`` on the exported directory alone (tokens in and
out, no rescoring: its scores are CTranslate2's own), the engine's ceiling.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_ctranslate2.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from _common import WORK, one_thread_translator, table, timed, write

MODEL = {
    "architecture": "transformer",
    "encoder_layers": 2,
    "decoder_layers": 2,
    "d_model": 128,
    "num_heads": 4,
    "ff_size": 512,
    "dropout": 0.0,
}
MODEL_DIR = WORK / "ct2-num2words-transformer"
EXPORT_DIR = WORK / "ct2-num2words-transformer-ct2"
BATCH = 64
MODES = {"greedy": {"beam": 1}, "beam 5": {"beam": 5}}


def train_model(seconds: float) -> Path:
    """Train and save the benchmark's model once (torch backend, ``seconds`` of training)."""
    import fixtures

    return fixtures.train_num2words(MODEL, MODEL_DIR, seconds)


def sources(count: int) -> list[str]:
    from seq2seq_kit.data import load_dataset

    pairs = load_dataset("num2words", low=0, high=10**6, count=count, seed=1).pairs
    return [source for source, _ in pairs]


def median_seconds(run, repeats: int) -> tuple[float, Any]:
    """The median seconds of ``repeats`` timed calls of ``run()`` after one untimed warm-up
    (engines load and allocate on first use), and the last call's result."""
    last: list[Any] = []
    seconds = timed(lambda: last.append(run()), min_time=0.0, min_repeats=repeats)["median"]
    return seconds, last[-1]


def measure(backend: str, texts: list[str], repeats: int) -> dict[str, Any]:
    t = one_thread_translator(MODEL_DIR, backend)
    out = {}
    for mode, options in MODES.items():
        seconds, found = median_seconds(
            lambda o=options: t.hypotheses(texts, batch_size=BATCH, **o), repeats
        )
        hyps = [h[0] for h in found]
        out[mode] = {
            "seconds": seconds,
            "ids": [h.ids for h in hyps],
            "tokens": sum(len(h.ids) + (not h.truncated) for h in hyps),
        }
    return out


def measure_plain(texts: list[str], repeats: int) -> dict[str, Any]:
    """The exported directory in plain ``ctranslate2.Translator``: tokens in, tokens out."""
    import ctranslate2
    from seq2seq_kit_ctranslate2.export import export_checkpoint, tokens

    from seq2seq_kit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(MODEL_DIR)
    if not (EXPORT_DIR / "model.bin").exists():
        export_checkpoint(ckpt, EXPORT_DIR)
    engine = ctranslate2.Translator(str(EXPORT_DIR), device="cpu", intra_threads=1)
    source = [list(t) for t in texts]  # character tokens, as the model's vocabulary
    ids = {token: i for i, token in enumerate(tokens(ckpt.target_vocab))}
    out = {}
    for mode, options in MODES.items():

        def run(o=options):
            return engine.translate_batch(
                source,
                max_batch_size=BATCH,
                beam_size=o["beam"],
                length_penalty=0.0,
                max_decoding_length=ckpt.max_length + 1,
                min_decoding_length=0,
                max_input_length=0,
                disable_unk=True,
                return_end_token=True,
            )

        seconds, results = median_seconds(run, repeats)
        hyps = [r.hypotheses[0] for r in results]
        out[mode] = {
            "seconds": seconds,
            "ids": [tuple(ids[t] for t in h if t != "</s>")[: ckpt.max_length] for h in hyps],
            "tokens": sum(min(len(h), ckpt.max_length + 1) for h in hyps),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument(
        "--backend", action="append", help="backends to compare (default: numpy, torch)"
    )
    parser.add_argument("--quick", action="store_true", help="256 sentences, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.repeats = 256, 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    train_model(args.train_seconds)
    texts = sources(args.sentences)
    others = args.backend or ["numpy", "torch"]
    measured = {b: measure(b, texts, args.repeats) for b in [*others, "ctranslate2"]}
    measured["ctranslate2 (plain)"] = measure_plain(texts, args.repeats)
    reference = measured.get("numpy")
    rows = []
    for mode in MODES:
        fastest = max(
            (b for b in others if b in measured),
            key=lambda b: -measured[b][mode]["seconds"],
        )
        for backend, m in measured.items():
            r = m[mode]
            same = None
            if reference is not None:
                pairs = zip(r["ids"], reference[mode]["ids"], strict=True)
                same = sum(a == b for a, b in pairs) / len(texts)
            row = {
                "decoding": mode,
                "backend": backend,
                "sentences/s": round(len(texts) / r["seconds"], 1),
                "target tokens/s": round(r["tokens"] / r["seconds"]),
                "identical to numpy": "n/a" if same is None else f"{same:.1%}",
                "vs fastest other": "",
            }
            if backend.startswith("ctranslate2"):
                speedup = measured[fastest][mode]["seconds"] / r["seconds"]
                row["vs fastest other"] = f"{speedup:.2f}x {fastest}"
            rows.append(row)
    columns = list(rows[0])
    write("ctranslate2", rows, {"sentences": len(texts), "batch": BATCH, "threads": 1})
    print(table(rows, columns))


if __name__ == "__main__":
    main()
