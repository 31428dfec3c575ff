"""Digits training time on a quiet and on a busy machine, with the default threads.

    python benchmarks/bench_threads.py [--backend torch] [--threads N] [--repeats R]
        [--env KEY=VALUE ...]

Times ``python -m seq2seq_kit train --backend torch --out DIR --overwrite`` (the default
config: the digits dataset) in a fresh process, first on the machine as it is ("quiet"),
then while another process burns one core (``python -c "while True: pass"``, started
and stopped here; "busy"), and prints both wall times (the median of ``--repeats``) and
their ratio. ``--threads`` passes ``--threads N`` (default: none, so the toolkit's default
applies); ``--env`` sets environment variables of the training process (e.g.
``OMP_WAIT_POLICY=PASSIVE``). The training processes inherit no ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS``, so nothing but the toolkit picks their
threads.

Target (issue 14): busy <= 2x quiet with the default threads. Frameworks' OpenMP pools
spin while they wait for a thread whose core is taken; on a 2-core machine a thread per
core made this run ~30x slower when one core was busy.
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


def median_seconds(repeats: int, *args) -> tuple[float, list[float]]:
    times = [train_seconds(*args) for _ in range(repeats)]
    return statistics.median(times), times


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
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        train_seconds(args.backend, 1, env, out, args.timeout)  # warm the file caches
        loads = [load()]
        picked = [default_threads(args.threads)]
        quiet, quiet_all = median_seconds(
            args.repeats, args.backend, args.threads, env, out, args.timeout
        )
        loads.append(load())
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)  # let the burner reach its core
            picked.append(default_threads(args.threads))
            busy, busy_all = median_seconds(
                args.repeats, args.backend, args.threads, env, out, args.timeout
            )
            loads.append(load())
        finally:
            burner.kill()
            burner.wait()
    threads = "default" if args.threads is None else args.threads
    print(f"backend {args.backend}, threads {threads}, env {' '.join(args.env) or '-'}")
    print(f"quiet: {quiet:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in quiet_all)})")
    print(f"busy (one core burnt): {busy:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in busy_all)})")
    print(f"busy / quiet: {busy / quiet:.2f}x  (target <= 2x)")
    print(f"threads a run started now would use: quiet {picked[0]}, busy {picked[1]}")
    print(f"1-minute load average before, between and after: {', '.join(loads)}")


if __name__ == "__main__":
    main()
