"""Digits training time on a quiet and on a busy machine, with the default threads.

    python benchmarks/bench_threads.py [--backend torch] [--threads N] [--repeats R]
        [--env KEY=VALUE ...]

Times ``python -m seq2seq_kit train --backend torch --out DIR --overwrite`` (the default
config: the digits dataset) in fresh processes, on the machine as it is ("quiet") and
while another process burns one core (``python -c "while True: pass"``, started and
stopped here; "busy"), in ``--repeats`` rounds of one quiet and one busy run, and prints
the median wall times and their ratio, next to the same ratio for a one-thread
pure-Python loop (what other work on the machine costs a process without any thread
pool). ``--threads`` passes ``--threads N`` (default: none, so the toolkit's default
applies); ``--env`` sets environment variables of the training process (e.g.
``OMP_WAIT_POLICY=ACTIVE``). The training processes inherit no ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS``, so nothing but the toolkit picks their
threads.

Target (issue 14): busy <= 2x quiet with the default threads. OpenMP pools spin by
default while they wait for a thread whose core is taken: on a 2-core machine, 2 spinning
threads made this run over 15x slower than one thread when the cores were busy.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_LOOP = "sum(i * i for i in range(20_000_000))"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def train_seconds(
    backend: str, threads: int | None, env: dict[str, str], out: Path, timeout: float
) -> float:
    """Wall seconds of one digits training run in a fresh process (inf past ``timeout``)."""
    command = [sys.executable, "-m", "seq2seq_kit", "train", "--backend", backend]
    command += ["--out", str(out), "--overwrite"]
    if threads is not None:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return math.inf  # reported as "over the timeout"
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def reference_seconds() -> float:
    """Wall seconds of a one-thread pure-Python loop in a fresh process: how much the
    burner (and any other work) slows a process that uses no thread pool at all; no
    thread setting can do better than this ratio."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", REFERENCE_LOOP], check=True)
    return time.perf_counter() - start


def default_threads(threads: int | None) -> int:
    """The thread count a training run started now would use (as its process sees it,
    give or take this one)."""
    from seq2seq_kit.runtime import resolve_threads

    return resolve_threads(threads or 0, environ={})


def load() -> str:
    """The 1-minute load average (other work on the machine skews both figures)."""
    try:
        return open("/proc/loadavg", encoding="ascii").read().split()[0]
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=None, help="default: the toolkit's")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before a run is given up"
    )
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(item.split("=", 1) for item in args.env)
    runs = {"quiet": [], "busy": []}
    loops = {"quiet": [], "busy": []}
    picked = {"quiet": set(), "busy": set()}
    loads = [load()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        train_seconds(args.backend, 1, env, out, args.timeout)  # warm the file caches
        # Quiet and busy runs alternate, so that other work on the machine, which comes
        # and goes, weighs on both alike.
        for _ in range(args.repeats):
            for phase in ("quiet", "busy"):
                burner = None
                if phase == "busy":
                    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    time.sleep(0.5)  # let the burner reach its core
                try:
                    picked[phase].add(default_threads(args.threads))
                    runs[phase].append(
                        train_seconds(args.backend, args.threads, env, out, args.timeout)
                    )
                    loops[phase].append(reference_seconds())
                finally:
                    if burner is not None:
                        burner.kill()
                        burner.wait()
            loads.append(load())
    threads = "default" if args.threads is None else args.threads
    print(f"backend {args.backend}, threads {threads}, env {' '.join(args.env) or '-'}")
    quiet, busy = (statistics.median(runs[p]) for p in ("quiet", "busy"))
    for phase, figure in (("quiet", quiet), ("busy (one core burnt)", busy)):
        times = ", ".join(f"{t:.2f}" for t in runs[phase.split()[0]])
        print(f"{phase}: {figure:.2f} s  (runs: {times})")
    print(f"busy / quiet: {busy / quiet:.2f}x  (target <= 2x)")
    loop_quiet, loop_busy = (statistics.median(loops[p]) for p in ("quiet", "busy"))
    print(
        f"one-thread Python loop ({REFERENCE_LOOP}): quiet {loop_quiet:.2f} s, busy "
        f"{loop_busy:.2f} s, {loop_busy / loop_quiet:.2f}x (no thread setting does better)"
    )
    print(
        f"threads a run started then would use: quiet {sorted(picked['quiet'])}, "
        f"busy {sorted(picked['busy'])}"
    )
    print(f"1-minute load average at the start and after each round: {', '.join(loads)}")


if __name__ == "__main__":
    main()
