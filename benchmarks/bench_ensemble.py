"""An ensemble of two models against one model, on a Tatoeba Transformer: what decoding
with two costs, greedy and beam 5, and members on one backend or on two.

    python benchmarks/bench_ensemble.py --model DIR [--second DIR] [--sentences 500]
        [--rounds 3]

Model: a model directory trained from ``examples/tatoeba-eng-fra-transformer.toml`` (3 + 3
layers of 256, one shared SentencePiece vocabulary), decoded with its saved length penalty,
length cap and stopping rule. ``--second`` (default: the model itself) is the ensemble's
second member; an ensemble of a model with itself does twice the work of one model and
must give its outputs, which the ``same best as one model`` column checks. Inputs:
``--sentences`` distinct English sentences of the Tatoeba file, a seeded sample (seed 1),
batch 64, one thread everywhere (every thread variable at 1 before any framework loads,
``Runtime(threads=1)`` for every member).

Engines, each through ``Translator.hypotheses`` (text in, hypotheses out): ``one model``
(numpy), ``ensemble numpy+numpy`` (both members on numpy) and, with PyTorch installed,
``one model (torch)`` (the second member alone, on torch) and ``ensemble numpy+torch``.
Every engine and mode runs once untimed, then ``--rounds`` times, each round in another
order, so that a change of the machine's load falls on all of them.

Figures: sentences per CPU second, from the process's CPU time (``time.process_time``) of
one call, the median over the rounds: with one thread, what the wall clock shows on an idle
machine, and much steadier on a shared one; the wall-clock figure beside it. ``vs one
model``: the engine's CPU seconds over one numpy model's in the same mode and run (the
target: at most 2.2x for an ensemble of two); ``vs its members alone``: an ensemble's CPU
seconds over the sum of its members' decoding alone: above 1 by what the ensemble adds
(the combination of the log-probabilities at each step), below 1 by the search's own work
(choosing tokens, beam bookkeeping), which an ensemble does once and its members alone
each once.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, one_thread_translator, table, thread_env, write

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
BATCH = 64
MODES: dict[str, dict[str, Any]] = {"greedy": {"beam": 1}, "beam 5": {"beam": 5}}
ONE = "one model"
ONE_TORCH = "one model (torch)"
TARGET = 2.2


def sources(path: Path, count: int) -> list[str]:
    """``count`` distinct English sentences of the Tatoeba file, a seeded sample."""
    rows = path.read_text(encoding="utf-8").splitlines()
    texts = sorted({row.split("\t")[0] for row in rows if "\t" in row})
    random.Random(1).shuffle(texts)
    return texts[:count]


def engines(model: Path, second: Path) -> dict[str, Any]:
    from seq2seq_kit.api import ensemble
    from seq2seq_kit.plugins import registry

    out = {ONE: one_thread_translator(model, "numpy")}
    out["ensemble numpy+numpy"] = ensemble([out[ONE], one_thread_translator(second, "numpy")])
    if "torch" in registry().backends:
        out[ONE_TORCH] = one_thread_translator(second, "torch")
        out["ensemble numpy+torch"] = ensemble([out[ONE], out[ONE_TORCH]])
    return out


def members_alone(engine: str, mode: str, median: dict[tuple[str, str], float]) -> float | None:
    """The CPU seconds of an ensemble's members each decoding alone, summed (None for one
    model): what the ensemble would cost with no work of its own."""
    members = {
        "ensemble numpy+numpy": [ONE, ONE],
        "ensemble numpy+torch": [ONE, ONE_TORCH],
    }.get(engine)
    return None if members is None else sum(median[m, mode] for m in members)


def run(translator, texts: list[str], mode: str) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    found = translator.hypotheses(texts, batch_size=BATCH, **MODES[mode])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "ids": [h[0].ids for h in found]}


def measure(args: argparse.Namespace) -> None:
    texts = sources(DATA, args.sentences)
    found = engines(Path(args.model), Path(args.second or args.model))
    jobs = [(e, m) for e in found for m in MODES]
    for engine, mode in jobs:  # untimed: engines load and allocate on first use
        run(found[engine], texts, mode)
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    ids: dict[tuple[str, str], list[tuple[int, ...]]] = {}
    for round_ in range(args.rounds):
        order = jobs[:]
        random.Random(round_).shuffle(order)
        for engine, mode in order:
            got = run(found[engine], texts, mode)
            cpu.setdefault((engine, mode), []).append(got["cpu"])
            wall.setdefault((engine, mode), []).append(got["seconds"])
            ids[engine, mode] = got["ids"]
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    n = len(texts)
    median = {key: statistics.median(times) for key, times in cpu.items()}
    rows = []
    for engine, mode in jobs:
        s = median[engine, mode]
        same = sum(a == b for a, b in zip(ids[engine, mode], ids[ONE, mode], strict=True)) / n
        ratio = s / median[ONE, mode]
        alone = members_alone(engine, mode, median)
        ensemble_row = engine.startswith("ensemble")
        rows.append(
            {
                "engine": engine,
                "mode": mode,
                "sentences/CPU s": round(n / s, 1),
                "sentences/s (wall)": round(n / statistics.median(wall[engine, mode]), 1),
                "vs one model": f"{ratio:.2f}x",
                "target": f"<= {TARGET}x" if ensemble_row else "",
                "met": ("yes" if ratio <= TARGET else "no") if ensemble_row else "",
                "vs its members alone": "" if alone is None else f"{s / alone:.2f}x",
                "same best as one model": f"{same:.1%}",
            }
        )
    extra = {
        "model": str(Path(args.model).resolve()),
        "second": str(Path(args.second or args.model).resolve()),
        "sentences": n,
        "batch": BATCH,
        "threads": 1,
        "rounds": args.rounds,
        "load average": [round(args.load, 1), round(os.getloadavg()[0], 1)],
    }
    path = write("ensemble", rows, extra)
    print(table(rows, list(rows[0])))
    print(f"load average {extra['load average']}; wrote {path.relative_to(RESULTS.parent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Tatoeba Transformer's directory")
    parser.add_argument("--second", help="the ensemble's second member (default: --model)")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        measure(args)
        return
    # again in a process whose thread variables are set before any framework loads
    os.execve(
        sys.executable,
        [sys.executable, __file__, *sys.argv[1:], "--worker", "--load", str(os.getloadavg()[0])],
        thread_env(1),
    )


if __name__ == "__main__":
    main()
