"""Lexically constrained beam search against plain beam search at the same beam, per
backend, on a Tatoeba Transformer, one thread.

    python benchmarks/bench_constraints.py --model DIR [--sentences 2000] [--rounds 3]
        [--beam 5] [--backend NAME ...]

Model: a model directory trained from ``examples/tatoeba-eng-fra-transformer.toml`` (the
one ``bench_beam.py`` decodes), with its saved length penalty and length cap. Inputs:
``--sentences`` distinct English sentences of the Tatoeba file whose first French
translation has two words or more, a seeded sample (seed 1), batch 64, one thread (every
thread variable at 1 before anything is imported, ``Runtime(threads=1)``). Constraints, as
a terminology list would give them: per source, the longest one or two distinct words of
its reference translation (punctuation around them stripped), so that a good output can
hold them.

Modes: ``beam N`` (no constraint), ``beam N, 1 constraint``, ``beam N, 2 constraints``,
each decoded by ``Translator.hypotheses`` (text in, hypotheses out), the modes taking turns
within each of ``--rounds`` rounds (each round in another order) after one untimed call
each. Figures: sentences per CPU second (``time.process_time`` of one call, the median over
the rounds: what the wall clock shows on an idle machine with one thread), the wall-clock
figure beside it, ``cost vs plain``: the mode's CPU seconds over plain beam's in the same
run; ``holding all``: the share of sources whose best output holds every constraint;
``same as plain``: the share whose best output is plain beam's (the constraints changed
the others); ``tokens``: the mean length of the best outputs.
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

os.environ.update(thread_env(1))  # before numpy or a framework is imported

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
BATCH = 64
PUNCTUATION = '.,;:!?«»"()¿¡…'


def inputs(path: Path, count: int) -> tuple[list[str], list[str]]:
    """``count`` distinct English sentences and their first French translation, a seeded
    sample of those whose translation has two words or more."""
    first: dict[str, str] = {}
    for row in path.read_text(encoding="utf-8").splitlines():
        fields = row.split("\t")
        if len(fields) >= 2:
            first.setdefault(fields[0], fields[1])
    texts = sorted(s for s, t in first.items() if len(_words(t)) >= 2)
    random.Random(1).shuffle(texts)
    texts = texts[:count]
    return texts, [first[s] for s in texts]


def _words(text: str) -> list[str]:
    words = (w.strip(PUNCTUATION) for w in text.split())
    return list(dict.fromkeys(w for w in words if w))


def constraints(references: list[str], count: int) -> list[list[str]]:
    """Per reference, its ``count`` longest distinct words (the first on equal lengths)."""
    return [sorted(_words(r), key=len, reverse=True)[:count] for r in references]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Tatoeba Transformer's directory")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--backend", action="append", help="default: numpy")
    args = parser.parse_args()
    backends = args.backend or ["numpy"]
    texts, references = inputs(DATA, args.sentences)
    modes: dict[str, list[list[str]] | None] = {
        f"beam {args.beam}": None,
        f"beam {args.beam}, 1 constraint": constraints(references, 1),
        f"beam {args.beam}, 2 constraints": constraints(references, 2),
    }
    engines = {b: one_thread_translator(args.model, b) for b in backends}
    jobs = [(b, m) for b in backends for m in modes]
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    found: dict[tuple[str, str], Any] = {}

    def run(backend: str, mode: str) -> None:
        start, clock = time.perf_counter(), time.process_time()
        hyps = engines[backend].hypotheses(
            texts, beam=args.beam, batch_size=BATCH, constraints=modes[mode]
        )
        cpu.setdefault((backend, mode), []).append(time.process_time() - clock)
        wall.setdefault((backend, mode), []).append(time.perf_counter() - start)
        found[backend, mode] = [h[0] for h in hyps]

    for backend, mode in jobs:  # untimed: allocations and first calls
        run(backend, mode)
    cpu.clear(), wall.clear()
    load = os.getloadavg()[0]
    for round_ in range(args.rounds):
        order = jobs[:]
        random.Random(round_).shuffle(order)
        for backend, mode in order:
            run(backend, mode)
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    rows = []
    n = len(texts)
    for backend, mode in jobs:
        seconds = statistics.median(cpu[backend, mode])
        plain = statistics.median(cpu[backend, f"beam {args.beam}"])
        best, free = found[backend, mode], found[backend, f"beam {args.beam}"]
        held = sum(h.constraints_met for h in best) / n
        same = sum(a.ids == b.ids for a, b in zip(best, free, strict=True)) / n
        rows.append(
            {
                "backend": backend,
                "mode": mode,
                "sentences/CPU s": round(n / seconds, 1),
                "sentences/s (wall)": round(n / statistics.median(wall[backend, mode]), 1),
                "cost vs plain": f"{seconds / plain:.2f}x",
                "holding all": "" if modes[mode] is None else f"{held:.1%}",
                "same as plain": f"{same:.1%}",
                "tokens": round(sum(len(h.ids) for h in best) / n, 2),
            }
        )
    extra = {
        "model": str(Path(args.model).resolve()),
        "sentences": n,
        "batch": BATCH,
        "beam": args.beam,
        "threads": 1,
        "rounds": args.rounds,
        "load average": [round(load, 1), round(os.getloadavg()[0], 1)],
    }
    path = write("constraints", rows, extra)
    print(table(rows, list(rows[0])))
    print(f"load average {extra['load average']}; wrote {path.relative_to(RESULTS.parent)}")


if __name__ == "__main__":
    main()
