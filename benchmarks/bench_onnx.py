"""Greedy decoding throughput of the ONNX Runtime backend against the NumPy and PyTorch
backends (PyTorch: the fastest decoding backend in RESULTS.md's num2words greedy row), one
thread each, on the same weights and inputs.

    python benchmarks/bench_onnx.py [--batch N] [--repeats N] [--backend NAME ...]

Models: the num2words RNN of the fixtures (LSTM 256, embedding 64, no attention) and the
Transformer of bench_transformer (2 + 2 layers, d_model 256), both with
``seq2seq_kit.weights.initial_weights(spec, 0)`` and the num2words vocabularies; inputs the
first ``--batch`` num2words sources (default 512), one ``seq2seq_kit.decoding.greedy`` call
over all of them, capped at the num2words model's length cap. Untrained weights make most
outputs run to the cap: every backend takes the same number of steps, and the script
asserts that every backend's outputs are identical to NumPy's.

Each backend runs in its own process (``_common.call``) with every thread variable at 1
and ``Runtime(threads=1)`` (onnxruntime: one intra-op and one inter-op thread). Figures:
the median of ``--repeats`` timed calls after one untimed one (which also builds
onnxruntime's sessions); sentences per second and target tokens per second (output ids
generated, EOS included).
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import call, thread_env, timed

BACKENDS = ("onnx", "numpy", "torch")


def measure(backend: str, batch: int, repeats: int) -> dict[str, Any]:
    """Runs in the backend's worker process: per model, timings and the output ids."""
    import fixtures
    from bench_transformer import MODEL as TRANSFORMER

    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.decoding import greedy
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.runtime import Runtime
    from seq2seq_kit.spec import ModelSpec, TransformerSpec
    from seq2seq_kit.weights import initial_weights

    ckpt = load_checkpoint(fixtures.NUM2WORDS_MODEL_DIR)
    vocab = (len(ckpt.source_vocab), len(ckpt.target_vocab))
    specs = {
        "RNN (LSTM 256)": ModelSpec(*vocab, **fixtures.NUM2WORDS_MODEL),
        "Transformer (2+2 x 256)": TransformerSpec(*vocab, **TRANSFORMER),
    }
    src, lengths = fixtures.num2words_sources(batch)
    result = {}
    for name, spec in specs.items():
        model = get_backend(backend).create(spec, seed=0, runtime=Runtime(threads=1))
        model.set_weights(initial_weights(spec, 0))
        cap = ckpt.max_length
        if isinstance(spec, TransformerSpec):
            cap = min(cap, spec.max_positions - 1)

        def run(model=model, cap=cap):
            return greedy(model, src, lengths, ckpt.target_vocab, cap)

        timing = timed(run, min_time=0.0, min_repeats=repeats)
        hyps = run()
        tokens = sum(len(h.ids) + (not h.truncated) for h in hyps)  # + EOS where emitted
        result[name] = {
            **timing,
            "cap": cap,
            "sentences_per_second": batch / timing["median"],
            "tokens_per_second": tokens / timing["median"],
            "ids": [list(h.ids) for h in hyps],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=512, help="num2words sources decoded")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure")
    parser.add_argument("--backend", action="append", help=f"default: {', '.join(BACKENDS)}")
    args = parser.parse_args()
    backends = args.backend or list(BACKENDS)
    import fixtures

    if not fixtures.NUM2WORDS_MODEL_DIR.exists():
        fixtures.prepare()
    measured, threads = {}, {}
    for backend in backends:
        outcome = call(
            "bench_onnx",
            "measure",
            env=thread_env(1),
            tag=backend,
            backend=backend,
            batch=args.batch,
            repeats=args.repeats,
        )
        if outcome.error:
            raise SystemExit(f"{backend}: {outcome.error} (log: {outcome.log})")
        measured[backend] = outcome.value["result"]
        threads[backend] = outcome.value["threads"]
    base = "numpy" if "numpy" in measured else backends[0]
    for model, expected in measured[base].items():
        for backend, m in measured.items():
            same = sum(a == b for a, b in zip(m[model]["ids"], expected["ids"], strict=True))
            assert same == args.batch, f"{model}: {backend} differs from {base} on " + (
                f"{args.batch - same} of {args.batch} outputs"
            )
    print(
        f"greedy decoding, {args.batch} num2words sources in one call, 1 thread, "
        f"median of {args.repeats} calls; outputs identical across backends"
    )
    for backend, used in threads.items():
        print(f"{backend} process: {used}")
    others = [b for b in backends if b != "onnx"]
    ratio_heads = "".join(f" onnx / {b} |" for b in others)
    print(f"| model | backend | sentences/s | target tokens/s | cap |{ratio_heads}")
    print("|---|---|---|---|---|" + "---|" * len(others))
    for model in measured[backends[0]]:
        for backend, m in measured.items():
            figure = m[model]
            ratios = ""
            for other in others:
                if backend == "onnx" and "onnx" in measured:
                    ratio = (
                        figure["sentences_per_second"]
                        / measured[other][model]["sentences_per_second"]
                    )
                    ratios += f" {ratio:.2f}x |"
                else:
                    ratios += " |"
            print(
                f"| {model} | {backend} | {figure['sentences_per_second']:,.0f} | "
                f"{figure['tokens_per_second']:,.0f} | {figure['cap']} |{ratios}"
            )


if __name__ == "__main__":
    main()
