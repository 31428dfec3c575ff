"""Beam search against greedy decoding and against CTranslate2's own search, per backend,
on a Tatoeba Transformer, and the cost of each stopping rule (``[decode] early_stopping``).

    python benchmarks/bench_beam.py --model DIR [--sentences 2000] [--rounds 3]
        [--backend NAME ...] [--tree LABEL=DIR ...]

Model: a model directory trained from ``examples/tatoeba-eng-fra-transformer.toml`` (3 + 3
layers of 256, one shared SentencePiece vocabulary), decoded with its saved length penalty
and length cap. Inputs: ``--sentences`` distinct English sentences of the Tatoeba file, a
seeded sample (seed 1), batch 64, one thread everywhere (every thread variable at 1,
``Runtime(threads=1)``, CTranslate2 ``intra_threads=1``).

Modes: greedy; beam 5 with each stopping rule (``early_stopping`` true, the rule of
CTranslate2's default patience 1 with a length penalty; false, the default; ``"never"``).
Engines: each backend through ``Translator.hypotheses`` (text in, hypotheses out: the
tokenizer's work included), and ``ctranslate2 (plain)``: ``ctranslate2.Translator`` on the
model exported to CTranslate2 (``translate_batch`` of source pieces, pieces out, batch 64,
``disable_unk``, patience 1: the engine's ceiling; not the tokenizer), whose beam 5 is run
once, with the saved length penalty.

``--tree LABEL=DIR`` (repeatable; default ``this=`` the tree holding this script) decodes
with the core and backends of the source tree ``DIR`` (an earlier commit's checkout, say):
each tree runs in a process of its own, started once, and the processes take turns, one
engine and mode at a time, for ``--rounds`` rounds (each round in another order), so that
a change of the machine's load falls on all of them. A tree whose ``Translator.hypotheses``
has no ``early_stopping`` decodes beam 5 once, by its own rule ("default").

Figures: sentences per CPU second, from the process's CPU time (``time.process_time``) of
one call, the median over the rounds (after one untimed call per engine and mode): with one
thread, what the wall clock shows on an idle machine, and much steadier on a shared one;
the wall-clock figure beside it. ``vs ct2 plain``: the ratio to the plain engine's figure
in the same run (greedy to greedy, beam to beam 5); ``beam / greedy``: the engine's beam
seconds over its greedy seconds; ``same best as numpy``: the share of sources whose best
hypothesis has the ids of the numpy backend's in the same tree and mode.
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

from _common import RESULTS, WORK, one_thread_translator, table, thread_env, write

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
BATCH = 64
BEAM = 5
BACKENDS = ("numpy", "torch", "onnx", "ctranslate2")
PLAIN = "ctranslate2 (plain)"
#: decode options of each mode; None: the tree's own default
MODES: dict[str, dict[str, Any]] = {
    "greedy": {"beam": 1},
    "beam 5, true": {"beam": BEAM, "early_stopping": True},
    "beam 5, false": {"beam": BEAM, "early_stopping": False},
    "beam 5, never": {"beam": BEAM, "early_stopping": "never"},
    "beam 5, default": {"beam": BEAM},
}


def sources(path: Path, count: int) -> list[str]:
    """``count`` distinct English sentences of the Tatoeba file, a seeded sample."""
    rows = path.read_text(encoding="utf-8").splitlines()
    texts = sorted({row.split("\t")[0] for row in rows if "\t" in row})
    random.Random(1).shuffle(texts)
    return texts[:count]


# ------------------------------------------------------------------ the worker process


class Engines:
    """Every engine of one tree, loaded once, each decoding the same texts."""

    def __init__(self, model: str, backends: list[str], texts: list[str]):
        import inspect

        from seq2seq_kit.api import Translator

        self.texts, self.model = texts, Path(model)
        self.translators = {b: one_thread_translator(self.model, b) for b in backends}
        hypotheses = inspect.signature(Translator.hypotheses).parameters
        self.rules = "early_stopping" in hypotheses
        self.plain: Any = None

    def modes(self, engine: str) -> list[str]:
        if engine == PLAIN:
            return ["greedy", "beam 5, true"]
        if not self.rules:
            return ["greedy", "beam 5, default"]
        return ["greedy", "beam 5, true", "beam 5, false", "beam 5, never"]

    def run(self, engine: str, mode: str) -> dict[str, Any]:
        if engine == PLAIN:
            return self._plain(mode)
        translator = self.translators[engine]
        start, cpu = time.perf_counter(), time.process_time()
        found = translator.hypotheses(self.texts, batch_size=BATCH, **MODES[mode])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"seconds": seconds, "cpu": cpu, "ids": [list(h[0].ids) for h in found]}

    def _plain(self, mode: str) -> dict[str, Any]:
        import ctranslate2

        from seq2seq_kit.decoding import encode

        some = next(iter(self.translators.values()))
        if self.plain is None:
            folder = WORK / f"ct2-{self.model.name}"
            if not (folder / "model.bin").exists():
                from seq2seq_kit_ctranslate2.export import export_checkpoint

                from seq2seq_kit.checkpoint import load_checkpoint

                export_checkpoint(load_checkpoint(self.model), folder)
            engine = ctranslate2.Translator(str(folder), device="cpu", intra_threads=1)
            vocab = some.source_vocab
            rows = encode(self.texts, vocab, some.model.spec)
            pieces = [[vocab.token(i) for i in row] for row in rows]
            target = {some.target_vocab.token(i): i for i in range(len(some.target_vocab))}
            self.plain = (engine, pieces, target)
        engine, pieces, target = self.plain
        options = some.decode_config()
        start, cpu = time.perf_counter(), time.process_time()
        results = engine.translate_batch(
            pieces,
            max_batch_size=BATCH,
            beam_size=MODES[mode]["beam"],
            length_penalty=options.length_penalty,
            max_decoding_length=some.decoding_limit() + 1,
            min_decoding_length=0,
            max_input_length=0,
            disable_unk=True,
            return_end_token=True,
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        ids = [[target[t] for t in r.hypotheses[0] if t != "</s>"] for r in results]
        return {"seconds": seconds, "cpu": cpu, "ids": ids}


def serve(model: str, backends: list[str], sentences: int) -> None:
    """The worker: one JSON request a line on stdin (``{"engine", "mode"}``), one JSON
    reply a line on stdout; the first line says which engines and modes it runs."""
    engines = Engines(model, backends, sources(DATA, sentences))
    names = [*backends, PLAIN] if "ctranslate2" in backends else list(backends)
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything else printed stays out of the replies
    print(json.dumps({e: engines.modes(e) for e in names}), file=reply, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(engines.run(request["engine"], request["mode"])), file=reply, flush=True)


# ------------------------------------------------------------------ the parent


class Worker:
    def __init__(self, label: str, tree: Path, args: argparse.Namespace):
        paths = [tree, *(tree / "backends" / b for b in BACKENDS)]
        env = thread_env(1)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        command = [sys.executable, __file__, "--worker", "--model", args.model]
        command += ["--sentences", str(args.sentences)]
        for backend in args.backend:
            command += ["--backend", backend]
        self.label = label
        self.proc = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.modes: dict[str, list[str]] = json.loads(self.proc.stdout.readline())

    def run(self, engine: str, mode: str) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"engine": engine, "mode": mode}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker of {self.label} ended; see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Tatoeba Transformer's directory")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", action="append", help=f"default: {', '.join(BACKENDS)}")
    parser.add_argument("--tree", action="append", help="LABEL=DIR, a source tree to run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.backend = args.backend or list(BACKENDS)
    if args.worker:
        serve(args.model, args.backend, args.sentences)
        return
    args.model = str(Path(args.model).resolve())
    trees = [t.split("=", 1) for t in args.tree or [f"this={HERE.parent}"]]
    load = os.getloadavg()[0]
    workers = [Worker(label, Path(tree).resolve(), args) for label, tree in trees]
    jobs = [(w, e, m) for w in workers for e, modes in w.modes.items() for m in modes]
    for w, e, m in jobs:  # untimed: engines load and allocate on first use
        w.run(e, m)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    wall: dict[tuple[str, str, str], list[float]] = {}
    ids: dict[tuple[str, str, str], list[list[int]]] = {}
    for round_ in range(args.rounds):
        order = jobs[:]
        random.Random(round_).shuffle(order)
        for w, e, m in order:
            got = w.run(e, m)
            seconds.setdefault((w.label, e, m), []).append(got["cpu"])
            wall.setdefault((w.label, e, m), []).append(got["seconds"])
            ids[w.label, e, m] = got["ids"]
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    for w in workers:
        w.close()
    rows = _rows(seconds, wall, ids, args.sentences)
    extra = {
        "model": args.model,
        "sentences": args.sentences,
        "batch": BATCH,
        "threads": 1,
        "rounds": args.rounds,
        "load average": [round(load, 1), round(os.getloadavg()[0], 1)],
        "trees": dict(trees),
    }
    path = write("beam", rows, extra)
    print(table(rows, list(rows[0])))
    print(f"load average {extra['load average']}; wrote {path.relative_to(RESULTS.parent)}")


def _rows(seconds, wall, ids, n: int) -> list[dict[str, Any]]:
    median = {key: statistics.median(times) for key, times in seconds.items()}
    engines, modes = [*BACKENDS, PLAIN], list(MODES)
    rows = []
    for (tree, engine, mode), s in sorted(
        median.items(), key=lambda kv: (kv[0][0], engines.index(kv[0][1]), modes.index(kv[0][2]))
    ):
        plain_mode = "greedy" if mode == "greedy" else "beam 5, true"
        plain = median.get((tree, PLAIN, plain_mode))
        greedy = median.get((tree, engine, "greedy"))
        reference = ids.get((tree, "numpy", mode))
        same = None
        if reference is not None:
            mine = ids[tree, engine, mode]
            same = sum(a == b for a, b in zip(mine, reference, strict=True)) / n
        rows.append(
            {
                "tree": tree,
                "engine": engine,
                "mode": mode,
                "sentences/CPU s": round(n / s, 1),
                "sentences/s (wall)": round(n / statistics.median(wall[tree, engine, mode]), 1),
                "vs ct2 plain": "" if plain is None else f"{plain / s:.2f}x",
                "beam / greedy": "" if mode == "greedy" or greedy is None else f"{s / greedy:.2f}x",
                "same best as numpy": "" if same is None else f"{same:.1%}",
            }
        )
    return rows


if __name__ == "__main__":
    main()
