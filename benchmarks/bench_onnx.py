"""Greedy decoding throughput of the ONNX Runtime backend against the NumPy and PyTorch
backends (PyTorch: the fastest decoding backend in RESULTS.md's num2words greedy row), one
thread each, on the same weights and inputs.

    python benchmarks/bench_onnx.py [--batch N] [--repeats N] [--backend NAME ...]
        [--train-seconds S] [--compare-onnx LABEL=DIR]

Models, each an RNN and a Transformer:

- untrained: the num2words RNN of the fixtures (LSTM 256, embedding 64, no attention) and
  the Transformer of bench_transformer (2 + 2 layers, d_model 256), with
  ``seq2seq_kit.weights.initial_weights(spec, 0)`` and the num2words vocabularies. Most
  outputs run to the length cap: every backend takes the same, largest number of steps.
- trained: the same RNN shape trained by the torch backend for ``--train-seconds`` (default
  120) on 20,000 num2words pairs (:func:`train_rnn`), and bench_ctranslate2's Transformer
  (2 + 2 layers, d_model 128, trained the same way); each is trained once and kept under
  ``results/work/``. Their outputs have the lengths of real num2words spellings.

Inputs: the first ``--batch`` num2words sources of the fixtures (default 512), one
``seq2seq_kit.decoding.greedy`` call over all of them, capped at the model's length cap
(and below a Transformer's ``max_positions``). The script asserts that every backend's
outputs are identical to NumPy's.

Each backend runs in its own process (``_common.call``) with every thread variable at 1
and ``Runtime(threads=1)`` (onnxruntime: one intra-op and one inter-op thread).
``--compare-onnx LABEL=DIR`` also runs the onnx backend imported from ``DIR`` (a source
tree holding ``seq2seq_kit_onnx``, e.g. an earlier version's ``backends/onnx``) as
``LABEL``, in the same run. The backends' processes run in turn, ``--rounds`` times (3),
each round in another order, so that a change in the machine's load falls on all of them.
Figures: per process the median of ``--repeats`` timed calls (1) after one untimed one
(which also builds onnxruntime's sessions), then the median over the rounds; sentences per
second and target tokens per second (output ids generated, EOS included). The load
average before and after is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from _common import WORK, call, thread_env, timed

BACKENDS = ("onnx", "numpy", "torch")
#: The trained RNN (the fixtures' num2words shape), kept between runs like the others.
TRAINED_RNN_DIR = WORK / "onnx-num2words-rnn"


def train_rnn(seconds: float) -> str:
    """Train and save the num2words RNN once (torch backend, ``seconds`` of training, the
    data and options of ``bench_ctranslate2.train_model``); returns its directory."""
    import fixtures

    model = {"architecture": "rnn", **fixtures.NUM2WORDS_MODEL}
    return str(fixtures.train_num2words(model, TRAINED_RNN_DIR, seconds))


def train_transformer(seconds: float) -> str:
    """bench_ctranslate2's trained Transformer (trained there once); returns its directory."""
    import bench_ctranslate2

    return str(bench_ctranslate2.train_model(seconds))


def _models() -> dict[str, tuple[Any, Any]]:
    """``{row name: (spec, weights, checkpoint whose vocabularies and cap apply)}``."""
    import bench_ctranslate2
    import fixtures
    from bench_transformer import MODEL as TRANSFORMER

    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.spec import ModelSpec, TransformerSpec
    from seq2seq_kit.weights import initial_weights

    ckpt = load_checkpoint(fixtures.NUM2WORDS_MODEL_DIR)
    vocab = (len(ckpt.source_vocab), len(ckpt.target_vocab))
    rnn = ModelSpec(*vocab, **fixtures.NUM2WORDS_MODEL)
    transformer = TransformerSpec(*vocab, **TRANSFORMER)
    models = {
        "RNN (LSTM 256), untrained": (rnn, initial_weights(rnn, 0), ckpt),
        "Transformer (2+2 x 256), untrained": (
            transformer,
            initial_weights(transformer, 0),
            ckpt,
        ),
    }
    for name, path in (
        ("RNN (LSTM 256), trained", TRAINED_RNN_DIR),
        ("Transformer (2+2 x 128), trained", bench_ctranslate2.MODEL_DIR),
    ):
        trained = load_checkpoint(path)
        models[name] = (trained.spec, trained.weights, trained)
    return models


def measure(backend: str, batch: int, repeats: int) -> dict[str, Any]:
    """Runs in the backend's worker process: per model, timings and the output ids."""
    import fixtures
    import numpy as np

    from seq2seq_kit.decoding import greedy
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.runtime import Runtime
    from seq2seq_kit.spec import TransformerSpec
    from seq2seq_kit.vocab import pad

    texts = [source for source, _ in fixtures.num2words_pairs(batch)]
    result = {}
    for name, (spec, weights, ckpt) in _models().items():
        ids = [ckpt.source_vocab.encode(text) for text in texts]
        src, lengths = pad(ids), np.array([len(i) for i in ids], dtype=np.int32)
        model = get_backend(backend).create(spec, seed=0, runtime=Runtime(threads=1))
        model.set_weights(weights)
        cap = ckpt.max_length
        if isinstance(spec, TransformerSpec):
            cap = min(cap, spec.max_positions - 1)

        last: dict[str, Any] = {}

        def run(model=model, src=src, lengths=lengths, ckpt=ckpt, cap=cap, last=last):
            last["hyps"] = greedy(model, src, lengths, ckpt.target_vocab, cap)

        timing = timed(run, min_time=0.0, min_repeats=repeats)
        hyps = last["hyps"]
        tokens = sum(len(h.ids) + (not h.truncated) for h in hyps)  # + EOS where emitted
        result[name] = {
            **timing,
            "cap": cap,
            "mean_length": tokens / batch,
            "sentences_per_second": batch / timing["median"],
            "tokens_per_second": tokens / timing["median"],
            "ids": [list(h.ids) for h in hyps],
        }
    return result


def _median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One backend's rounds as one result: per model, the median of the rounds' medians
    (the speeds recomputed from it); the ids of the first round, the others asserted equal."""
    import statistics

    merged = {}
    for model, first in results[0].items():
        for other in results[1:]:
            assert other[model]["ids"] == first["ids"], f"{model}: outputs vary between rounds"
        median = statistics.median(r[model]["median"] for r in results)
        scale = first["median"] / median
        merged[model] = {
            **first,
            "median": median,
            "sentences_per_second": first["sentences_per_second"] * scale,
            "tokens_per_second": first["tokens_per_second"] * scale,
        }
    return merged


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=512, help="num2words sources decoded")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per process")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of every backend's process, in turn; the figure is the median of the rounds",
    )
    parser.add_argument("--backend", action="append", help=f"default: {', '.join(BACKENDS)}")
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument(
        "--compare-onnx",
        metavar="LABEL=DIR",
        action="append",
        default=[],
        help="also run the onnx backend imported from DIR, labelled LABEL",
    )
    args = parser.parse_args()
    backends = args.backend or list(BACKENDS)
    import fixtures

    if not fixtures.NUM2WORDS_MODEL_DIR.exists():
        fixtures.prepare()
    for function in ("train_rnn", "train_transformer"):
        outcome = call("bench_onnx", function, env=thread_env(1), seconds=args.train_seconds)
        if outcome.error:
            raise SystemExit(f"{function}: {outcome.error} (log: {outcome.log})")
    runs = [(backend, backend, {}) for backend in backends]
    for item in args.compare_onnx:
        label, _, directory = item.partition("=")
        path = os.pathsep.join([str(Path(directory).resolve()), os.environ.get("PYTHONPATH", "")])
        runs.append((label, "onnx", {"PYTHONPATH": path}))
    print(f"before: {_load()}")
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
    threads = {}
    for round_ in range(args.rounds):
        # each round in another order, so that no backend always runs first or last
        shift = round_ % len(runs)
        for label, backend, extra in runs[shift:] + runs[:shift]:
            outcome = call(
                "bench_onnx",
                "measure",
                env={**thread_env(1), **extra},
                tag=label.replace(" ", "-"),
                backend=backend,
                batch=args.batch,
                repeats=args.repeats,
            )
            if outcome.error:
                raise SystemExit(f"{label}: {outcome.error} (log: {outcome.log})")
            rounds[label].append(outcome.value["result"])
            threads[label] = outcome.value["threads"]
    measured = {label: _median_of(results) for label, results in rounds.items()}
    print(f"after: {_load()}")
    base = "numpy" if "numpy" in measured else next(iter(measured))
    for model, expected in measured[base].items():
        for label, m in measured.items():
            same = sum(a == b for a, b in zip(m[model]["ids"], expected["ids"], strict=True))
            assert same == args.batch, f"{model}: {label} differs from {base} on " + (
                f"{args.batch - same} of {args.batch} outputs"
            )
    print(
        f"greedy decoding, {args.batch} num2words sources in one call, 1 thread, median of "
        f"{args.rounds} rounds of {args.repeats} timed call(s) per backend; outputs identical "
        "across backends"
    )
    for label, used in threads.items():
        print(f"{label} process: {used}")
    others = [b for b in measured if b != "onnx"]
    ratio_heads = "".join(f" onnx / {b} |" for b in others)
    print(f"| model | backend | sentences/s | target tokens/s | mean length | cap |{ratio_heads}")
    print("|---|---|---|---|---|---|" + "---|" * len(others))
    for model in measured[base]:
        for label, m in measured.items():
            figure = m[model]
            ratios = ""
            for other in others:
                if label == "onnx":
                    ratio = (
                        figure["sentences_per_second"]
                        / measured[other][model]["sentences_per_second"]
                    )
                    ratios += f" {ratio:.2f}x |"
                else:
                    ratios += " |"
            print(
                f"| {model} | {label} | {figure['sentences_per_second']:,.0f} | "
                f"{figure['tokens_per_second']:,.0f} | {figure['mean_length']:.1f} | "
                f"{figure['cap']} |{ratios}"
            )


if __name__ == "__main__":
    main()
