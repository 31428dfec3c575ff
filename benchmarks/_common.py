"""Shared by the benchmark scripts: which backends to run, where results go, and the
machinery of the performance suite (subprocess isolation, timing, threads, result rows)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def backends_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", action="append", help="backend(s) to measure (default: every installed one)"
    )


def chosen_backends(args: argparse.Namespace) -> list[str]:
    from seq2seq_kit.plugins import registry

    return args.backend or sorted(registry().backends)


def machine() -> str:
    """CPU model and count, from /proc/cpuinfo where there is one."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def write(
    name: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    merge_on: str | None = None,
) -> Path:
    """Write ``results/NAME.json``. With ``merge_on`` (e.g. ``"backend"``), rows already
    there whose ``merge_on`` value none of ``rows`` has are kept, so that runs of one
    backend at a time add up to one table."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    if merge_on is not None and path.exists():
        new = {row[merge_on] for row in rows}
        old = json.loads(path.read_text()).get("rows", [])
        rows = [row for row in old if row.get(merge_on) not in new] + rows
    doc = {
        "benchmark": name,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
        **(extra or {}),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns``."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Performance suite (benchmarks/run.py): subprocesses, timing, threads, result rows.
# --------------------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
#: Fixtures shared by the benchmarks of one run (trained digits model, num2words data,
#: random num2words weights) and subprocess logs; under results/, so not tracked by git.
WORK = RESULTS / "work"
LOGS = RESULTS / "logs"

#: Environment variables that set the thread count of the numeric libraries: OpenMP
#: (PyTorch's intra-op pool, OpenBLAS, MKL), TensorFlow's two pools.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment for every benchmark subprocess.

    ``threads=None`` leaves each framework's default (usually one thread per core; see
    :func:`thread_info` for what each process actually used). ``threads=N`` pins OpenMP,
    OpenBLAS, MKL and both TensorFlow pools to N (PyTorch reads ``OMP_NUM_THREADS`` at
    start-up) and, for N = 1, XLA's CPU matmuls and convolutions (JAX) to one thread too
    (``--xla_cpu_multi_thread_eigen=false``; XLA has no flag for other N). The variables
    are set before any framework is imported, so every backend and reference sees the same.
    """
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads is not None:
        for name in THREAD_VARIABLES:
            env[name] = str(threads)
        if threads == 1:
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return env


def thread_info() -> dict[str, Any]:
    """Threads the current process uses, for the frameworks it has imported (none is
    imported here): CPUs it may run on, the thread variables, ``torch.get_num_threads()``,
    TensorFlow's configured pools (0: not set through ``tf.config``, so the
    ``TF_NUM_*_THREADS`` variables or TensorFlow's default, all cores, apply)."""
    import sys

    info: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0))}
    info.update({k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ})
    if "XLA_FLAGS" in os.environ:
        info["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch.get_num_threads"] = torch.get_num_threads()
        info["torch.get_num_interop_threads"] = torch.get_num_interop_threads()
    if "tensorflow" in sys.modules:
        threading = sys.modules["tensorflow"].config.threading
        info["tf.intra_op_threads"] = threading.get_intra_op_parallelism_threads()
        info["tf.inter_op_threads"] = threading.get_inter_op_parallelism_threads()
    if "jax" in sys.modules:  # its thread pool is XLA's; only XLA_FLAGS above sets it
        info["jax"] = getattr(sys.modules["jax"], "__version__", "?")
    return info


@dataclass
class Outcome:
    """What :func:`call` brings back from a subprocess.

    Attributes:
        value: the function's JSON-able return value (None on failure).
        error: the last lines of the traceback, or why the process died; None on success.
        peak_rss_mb: the child's peak resident set size in MB (10^6 bytes), from the
            ``ru_maxrss`` that ``os.wait4`` reports for that one child (the per-child form
            of ``getrusage(RUSAGE_CHILDREN)``, which is a maximum over all children ever
            waited for and so could not tell two children apart).
        seconds: wall time of the whole subprocess, start-up and imports included.
        log: file holding the child's stdout and stderr.
    """

    value: Any
    error: str | None
    peak_rss_mb: float
    seconds: float
    log: str


def call(
    module: str,
    function: str,
    *,
    env: dict[str, str],
    timeout: float | None = None,
    tag: str = "",
    python: str | None = None,
    **kwargs: Any,
) -> Outcome:
    """Run ``module.function(**kwargs)`` (a module of benchmarks/) in a fresh Python
    process through ``_worker.py`` and return its result with the child's peak RSS.
    ``python``: the interpreter to run it with (default: this one's), for a benchmark
    whose frameworks are installed in different environments.

    Each call is isolated: its framework imports, thread pools and memory are its own.
    Arguments and the result cross as JSON files; stdout and stderr go to a log file in
    ``results/logs/``.
    """
    import subprocess
    import sys
    import tempfile
    import threading

    WORK.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    name = "-".join(p for p in (module, function, tag) if p)
    log_path = LOGS / f"{name}.log"
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        args_path, out_path = Path(tmp, "args.json"), Path(tmp, "out.json")
        args_path.write_text(json.dumps(kwargs))
        cmd = [python or sys.executable, str(HERE / "_worker.py"), module, function]
        cmd.append(str(args_path))
        cmd.append(str(out_path))
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            killed = threading.Event()

            def kill() -> None:
                killed.set()
                proc.kill()

            timer = threading.Timer(timeout, kill) if timeout else None
            if timer is not None:
                timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                if timer is not None:
                    timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        peak = usage.ru_maxrss * 1024 / 1e6  # Linux reports KiB
        if out_path.exists() and proc.returncode == 0:
            return Outcome(json.loads(out_path.read_text()), None, peak, seconds, str(log_path))
    if killed.is_set():
        error = f"killed after the {timeout:.0f} s time limit"
    else:
        tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        error = f"exit status {proc.returncode}: " + " | ".join(tail[-3:])
    return Outcome(None, error, peak, seconds, str(log_path))


def timed(fn: Any, *, min_time: float, min_repeats: int = 1, warmup: int = 1) -> dict[str, Any]:
    """Call ``fn()`` ``warmup`` times untimed, then until both ``min_repeats`` calls and
    ``min_time`` seconds have passed. Returns the median and best seconds per call and
    the number of timed calls. The median is the reported figure: one stalled call (another
    process, a garbage collection) does not move it."""
    import statistics

    for _ in range(warmup):
        fn()
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - begin < min_time:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "best": min(times), "repeats": len(times)}


def row(
    benchmark: str,
    backend: str,
    figure: float | None,
    unit: str,
    reference: float | None,
    reference_unit: str,
    reference_name: str,
    ratio: float | None,
    target: str,
    met: bool | None,
    notes: str = "",
) -> dict[str, Any]:
    """One result: ``figure`` (in ``unit``) measured for ``backend``, against
    ``reference`` (in ``reference_unit``; what it is: ``reference_name``), their ``ratio``
    (defined per benchmark, see the ``target`` text), whether the target was ``met``
    (None: informational row without a target, or not measurable)."""
    return {
        "benchmark": benchmark,
        "backend": backend,
        "figure": figure,
        "unit": unit,
        "reference": reference,
        "reference_unit": reference_unit,
        "reference_name": reference_name,
        "ratio": ratio,
        "target": target,
        "met": met,
        "notes": notes,
    }


def template(
    benchmark: str, unit: str, reference_name: str, target: str, reference_unit: str | None = None
):
    """A :func:`row` maker for one benchmark: ``make(backend, figure, reference, ratio, met,
    notes="")``, the unit, reference name and target fixed."""

    def make(
        backend: str,
        figure: float | None,
        reference: float | None,
        ratio: float | None,
        met: bool | None,
        notes: str = "",
    ) -> dict[str, Any]:
        return row(
            benchmark,
            backend,
            figure,
            unit,
            reference,
            reference_unit or unit,
            reference_name,
            ratio,
            target,
            met,
            notes,
        )

    return make


def ratio_of(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def markdown(rows: list[dict[str, Any]]) -> str:
    """The perf table: benchmark, backend, figure with unit, reference figure (and what
    it is), ratio, target, met (yes / no / n/a for informational rows), notes."""
    head = ["benchmark", "backend", "figure", "reference", "ratio", "target", "met", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ref = _fmt(r["reference"], r["reference_unit"])
        if r["reference_name"]:
            ref += f" ({r['reference_name']})"
        met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]]
        ratio = "-" if r["ratio"] is None else f"{_fmt(r['ratio'])}x"
        cells = [
            r["benchmark"],
            r["backend"],
            _fmt(r["figure"], r["unit"]),
            ref,
            ratio,
            r["target"],
            met,
            r["notes"].replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def one_thread_translator(path: str | Path, backend: str) -> Any:
    """The saved model directory ``path`` in ``backend``, on the CPU with one intra-op
    thread (``seq2seq_kit.load`` takes the machine's thread count), as every benchmark
    compares engines: a ``seq2seq_kit.api.Translator``. seq2seq_kit is imported here, so
    that a benchmark running another source tree's code gets that tree's."""
    from seq2seq_kit.api import Translator
    from seq2seq_kit.checkpoint import load_checkpoint
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.runtime import Runtime

    ckpt = load_checkpoint(path)
    model = get_backend(backend).create(ckpt.spec, runtime=Runtime(threads=1, device="cpu"))
    model.set_weights(ckpt.weights)
    return Translator(
        model,
        ckpt.source_vocab,
        ckpt.target_vocab,
        backend=backend,
        max_length=ckpt.max_length,
        meta=ckpt.meta,
    )
