"""int8 against float32 per engine: greedy throughput, chrF and exact match on the model's
held-out test sources, agreement with float32's outputs, and the exports' file sizes.

    python benchmarks/bench_quantized.py --model tatoeba=DIR --model num2words=DIR
        [--rounds 3] [--sentences N]

Models: model directories (the Tatoeba Transformer of
``examples/tatoeba-eng-fra-transformer.toml``, the num2words RNN of
``examples/num2words.toml``). Test sources: the validation split of the model's own run,
rebuilt from its saved config (``data.source``, its options, ``data.valid_fraction``,
``train.seed``; :func:`seq2seq_kit.data.split`), which holds out distinct sources with all
their pairs: no test source was trained on (checked), and every reference of a source
counts. ``--sentences`` keeps the first N of them.

Engines: the ``ctranslate2`` backend (Transformers only) and the ``onnx`` backend, each in
float32 and int8 (``Runtime(quantization="int8")``: the graphs and weights an
``export --quantization int8`` writes), through ``Translator.hypotheses`` (text in,
hypotheses out, the tokenizer included), greedy, batch 64, the model's saved length cap;
and ``ctranslate2 (plain)``: ``ctranslate2.Translator.translate_batch`` on the float32 and
int8 exports, pieces in and out, for reference. Each engine and scheme runs in a process of
its own, started once, on one thread (every thread variable at 1, ``Runtime(threads=1)``,
CTranslate2 ``intra_threads=1``, ONNX Runtime one intra- and one inter-op thread); the
processes take turns, for ``--rounds`` rounds, each in another order, after one untimed
call each.

Figures: sentences per CPU second of one call (``time.process_time``), the median over
the rounds, and the wall clock's beside it; ``int8 / float32``: the ratio of the two in
the same engine; chrF (sacrebleu) and exact match against all references; ``same as
float32``: the share of sources whose output equals the same engine's float32 output;
``nats/token``: over those, the mean and largest difference of the two scores (sums of
log-probabilities, EOS counted) divided by the output's length plus one, the measure of
:data:`seq2seq_kit.quantization.TOLERANCES`; sizes: the files of
``seq2seq-kit export --format F [--quantization int8]``, the weights' files alone
(``model.bin``; ``encoder.onnx`` and ``decoder_step.onnx``) and the whole export.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, WORK, table, thread_env, write

HERE = Path(__file__).resolve().parent
BATCH = 64
SCHEMES = ("float32", "int8")
PLAIN = "ctranslate2 (plain)"
#: The files of each export format that hold the weights.
WEIGHT_FILES = {"ctranslate2": ("model.bin",), "onnx": ("encoder.onnx", "decoder_step.onnx")}


# ------------------------------------------------------------------ the test split


def test_split(model: Path) -> tuple[list[str], list[list[str]]]:
    """The held-out sources of ``model``'s run and all their references, in the order of
    the data; refuses a source that training saw."""
    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.config import Config
    from seq2seq_kit.data import load_dataset, split
    from seq2seq_kit.metrics import group_references

    config = Config.model_validate(load_checkpoint(model).meta["config"])
    data = config.data
    dataset = load_dataset(data.source, data.limit, **data.options)
    fraction = dataset.valid_fraction if data.valid_fraction is None else data.valid_fraction
    train, held = split(dataset.pairs, fraction, config.train.seed)
    seen = {source for source, _ in train} & {source for source, _ in held}
    if seen or not held:
        raise SystemExit(f"{model}: the held-out split is empty or was trained on ({seen})")
    return group_references(held)


# ------------------------------------------------------------------ the worker process


class Engine:
    """One engine in one scheme over one model, decoding the same sources each call."""

    def __init__(self, model: str, engine: str, scheme: str, export: str, sources: list[str]):
        from seq2seq_kit.api import Translator
        from seq2seq_kit.checkpoint import load_checkpoint
        from seq2seq_kit.plugins import get_backend
        from seq2seq_kit.runtime import Runtime

        self.sources = sources
        ckpt = load_checkpoint(model)
        self.cap = ckpt.max_length
        if engine == PLAIN:
            import ctranslate2

            from seq2seq_kit.decoding import encode

            self.engine = ctranslate2.Translator(export, device="cpu", intra_threads=1)
            vocab = ckpt.source_vocab
            rows = encode(sources, vocab, ckpt.spec)
            self.pieces = [[vocab.token(i) for i in row] for row in rows]
            self.target = ckpt.target_vocab
            self.ids = {self.target.token(i): i for i in range(len(self.target))}
            self.translator = None
            return
        quantization = None if scheme == "float32" else scheme
        runtime = Runtime(threads=1, device="cpu", quantization=quantization)
        model_ = get_backend(engine).create(ckpt.spec, runtime=runtime)
        model_.set_weights(ckpt.weights)
        self.translator = Translator(
            model_, ckpt.source_vocab, ckpt.target_vocab, backend=engine, max_length=self.cap
        )

    def run(self) -> dict[str, Any]:
        start, cpu = time.perf_counter(), time.process_time()
        if self.translator is None:
            results = self.engine.translate_batch(
                self.pieces,
                max_batch_size=BATCH,
                beam_size=1,
                max_decoding_length=self.cap + 1,
                min_decoding_length=0,
                max_input_length=0,
                disable_unk=True,
                return_end_token=True,
            )
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            ids = [[self.ids[t] for t in r.hypotheses[0] if t != "</s>"] for r in results]
            texts = [self.target.decode(i) for i in ids]
            return {"seconds": seconds, "cpu": cpu, "texts": texts, "ids": ids, "scores": None}
        found = self.translator.hypotheses(self.sources, batch_size=BATCH, beam=1)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        best = [h[0] for h in found]
        return {
            "seconds": seconds,
            "cpu": cpu,
            "texts": [h.text for h in best],
            "ids": [list(h.ids) for h in best],
            "scores": [h.score for h in best],
        }


def serve(args: argparse.Namespace) -> None:
    """The worker: ``ready`` once loaded, then one JSON reply a line per input line."""
    sources = json.loads(Path(args.sources).read_text(encoding="utf-8"))
    engine = Engine(args.model[0], args.engine, args.scheme, args.export, sources)
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything else printed stays out of the replies
    print(json.dumps({"ready": True}), file=reply, flush=True)
    for _ in sys.stdin:
        print(json.dumps(engine.run()), file=reply, flush=True)


# ------------------------------------------------------------------ the parent


class Worker:
    def __init__(self, label: str, model: Path, engine: str, scheme: str, export: Path, sources):
        env = thread_env(1)
        tree = HERE.parent
        paths = [tree, tree / "backends" / "onnx", tree / "backends" / "ctranslate2"]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        command = [sys.executable, __file__, "--worker", "--model", str(model)]
        command += ["--engine", engine, "--scheme", scheme, "--export", str(export)]
        command += ["--sources", str(sources)]
        self.key = (label, engine, scheme)
        self.proc = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker of {self.key} ended; see its stderr above")

    def run(self) -> dict[str, Any]:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker of {self.key} ended; see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def exports(label: str, model: Path, formats: list[str]) -> dict[tuple[str, str], Path]:
    """The model exported in each format and scheme (under results/work/), made once."""
    from seq2seq_kit.export import export_model

    made = {}
    for format in formats:
        for scheme in SCHEMES:
            out = WORK / "quantized" / f"{label}-{format}-{scheme}"
            if not (out / "manifest.json").exists():
                quantization = None if scheme == "float32" else scheme
                export_model(model, format, out, overwrite=True, quantization=quantization)
            made[format, scheme] = out
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="LABEL=DIR (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, help="at most this many test sources")
    for name in ("--engine", "--scheme", "--export", "--sources"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args)
        return
    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.metrics import score

    load = os.getloadavg()[0]
    workers, tests, sizes = [], {}, {}
    for entry in args.model or []:
        label, _, path = entry.partition("=")
        model = Path(path).resolve()
        sources, references = test_split(model)
        if args.sentences:
            sources, references = sources[: args.sentences], references[: args.sentences]
        tests[label] = (sources, references)
        listed = WORK / "quantized" / f"{label}-sources.json"
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text(json.dumps(sources, ensure_ascii=False), encoding="utf-8")
        transformer = load_checkpoint(model).spec.architecture == "transformer"
        formats = ["ctranslate2", "onnx"] if transformer else ["onnx"]
        made = exports(label, model, formats)
        for (format, scheme), out in made.items():
            files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
            weights = sum(files[name] for name in WEIGHT_FILES[format])
            sizes[label, format, scheme] = (weights, sum(files.values()))
        engines = [*formats, PLAIN] if transformer else formats
        for engine in engines:
            for scheme in SCHEMES:
                export = made.get(("ctranslate2", scheme), Path("-"))
                workers.append(Worker(label, model, engine, scheme, export, listed))
    for worker in workers:  # untimed: engines allocate on first use
        worker.run()
    cpu: dict[tuple, list[float]] = {}
    wall: dict[tuple, list[float]] = {}
    outputs: dict[tuple, dict[str, Any]] = {}
    for round_ in range(args.rounds):
        order = workers[:]
        random.Random(round_).shuffle(order)
        for worker in order:
            got = worker.run()
            cpu.setdefault(worker.key, []).append(got["cpu"])
            wall.setdefault(worker.key, []).append(got["seconds"])
            outputs[worker.key] = got
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    for worker in workers:
        worker.close()

    rows = []
    engines = ["ctranslate2", PLAIN, "onnx"]
    for label, engine, scheme in sorted(
        cpu, key=lambda k: (list(tests).index(k[0]), engines.index(k[1]), SCHEMES.index(k[2]))
    ):
        sources, references = tests[label]
        n = len(sources)
        got, exact = outputs[label, engine, scheme], outputs[label, engine, "float32"]
        scores = score(got["texts"], references)
        same = [a == b for a, b in zip(got["ids"], exact["ids"], strict=True)]
        gaps = []
        if got["scores"] is not None:
            gaps = [
                abs(a - b) / (len(ids) + 1)
                for a, b, ids, equal in zip(
                    got["scores"], exact["scores"], got["ids"], same, strict=True
                )
                if equal
            ]
        speed = n / statistics.median(cpu[label, engine, scheme])
        base = n / statistics.median(cpu[label, engine, "float32"])
        format = "onnx" if engine == "onnx" else "ctranslate2"
        weights, total = sizes[label, format, scheme]
        float_weights, float_total = sizes[label, format, "float32"]
        rows.append(
            {
                "model": label,
                "engine": engine,
                "scheme": scheme,
                "sources": n,
                "sentences/CPU s": round(speed, 1),
                "sentences/s (wall)": round(n / statistics.median(wall[label, engine, scheme]), 1),
                "int8 / float32": "" if scheme == "float32" else f"{speed / base:.2f}x",
                "chrF": round(scores["chrf"], 2),
                "exact match": round(100 * scores["exact_match"], 2),
                "same as float32": f"{sum(same) / n:.1%}",
                "nats/token mean": float(f"{statistics.mean(gaps):.2g}") if gaps else "",
                "nats/token max": float(f"{max(gaps):.2g}") if gaps else "",
                "weights MB": round(weights / 1e6, 2),
                "weights / float32": f"{weights / float_weights:.3f}x",
                "export MB": round(total / 1e6, 2),
                "export / float32": f"{total / float_total:.3f}x",
            }
        )
    extra = {
        "models": dict(entry.partition("=")[::2] for entry in args.model),
        "batch": BATCH,
        "threads": 1,
        "rounds": args.rounds,
        "load average": [round(load, 1), round(os.getloadavg()[0], 1)],
    }
    path = write("quantized", rows, extra)
    print(table(rows, list(rows[0])))
    print(f"load average {extra['load average']}; wrote {path.relative_to(RESULTS.parent)}")


if __name__ == "__main__":
    main()
