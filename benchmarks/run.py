"""seq2seq-kit performance suite: every benchmark, each figure next to its reference.

    python benchmarks/run.py [--quick] [--backend NAME ...] [--threads N] [--only NAME ...]

Writes ``benchmarks/results/perf.json`` (every raw measurement, the references, thread
settings, the rows) and ``benchmarks/results/perf.md`` (the table: benchmark, backend,
figure with unit, reference figure, ratio, target, met), and prints the table.

Order of a run (each step a fresh subprocess, see ``_common.call``; logs in
``results/logs/``):

1. fixtures.py: the trained digits model, the num2words data and the num2words model.
2. References, measured in this run: reference_sgemm.py (fp32 matmul peak through NumPy),
   reference_seed_keras.py (the seed notebook's training and decoding loop),
   reference_torch.py (plain PyTorch encoder-decoder: greedy decoding and training).
3. Per backend, one worker process: bench_digits, bench_decode, bench_train,
   bench_transformer (so that no two frameworks share a process, a thread pool or an
   import).
4. bench_memory: two processes per backend (100,000 and 10,000 pairs).
5. bench_loading: two processes loading ``--limit 3`` pairs, from a large and a tiny TSV file.
6. bench_startup: the CLI commands, in subprocesses.
7. bench_batching: Tatoeba training with token against sentence batches, numpy backend,
   one thread whatever ``--threads`` says (three processes).

Threads: by default every framework keeps its own default (one thread per core for
OpenBLAS, PyTorch and TensorFlow's pools) and perf.json records what each process used
(``torch.get_num_threads()`` etc.). ``--threads N`` pins them all to N through the
environment before anything is imported (see ``_common.thread_env``); the sgemm peak is
then the N-thread peak too. On a machine shared with other work, PyTorch's default
OpenMP pool can be slowed many times over by waiting for busy cores; ``--threads 1`` avoids
that.

``--quick`` shrinks every size for a smoke test (a few minutes; figures not meaningful: the
seed reference is extrapolated from a few epochs, decoding batches and step counts are
small). ``--backend`` limits the backends (default: every installed one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    WORK,
    backends_arg,
    call,
    chosen_backends,
    machine,
    markdown,
    thread_env,
)

BENCHES = (
    "digits",
    "decode",
    "train",
    "transformer",
    "memory",
    "loading",
    "startup",
    "batching",
)

SIZES = {
    "full": {
        "sgemm_n": 4096,
        "sgemm_repeats": 5,
        "seed_epochs": 300,
        "seed_decode": 9,
        "decode_min_time": 1.0,
        "decode_min_repeats": 3,
        "n2w_decode_batch": 4096,
        "n2w_max_length": None,  # the model's own cap (twice the longest target)
        "train_warmup": 5,
        "train_steps": 50,
        "memory_steps": 200,
        "loading_mb": 300,
        "startup_runs": 11,
        "batching_seconds": 60.0,
        "timeout": 3600,
    },
    "quick": {
        "sgemm_n": 2048,
        "sgemm_repeats": 3,
        "seed_epochs": 10,
        "seed_decode": 2,
        "decode_min_time": 0.0,
        "decode_min_repeats": 3,
        "n2w_decode_batch": 256,
        "n2w_max_length": 20,
        "train_warmup": 1,
        "train_steps": 3,
        "memory_steps": 3,
        "loading_mb": 30,
        "startup_runs": 3,
        "batching_seconds": 5.0,
        "timeout": 900,
    },
}


def measure_backend(backend: str, benches: list[str], sizes: dict[str, Any]) -> dict[str, Any]:
    """Runs in a backend's worker: its digits, decode and train measurements; a failure
    of one is recorded as ``{"error": ...}`` and the others still run."""
    import traceback

    import bench_decode
    import bench_digits
    import bench_train
    import bench_transformer

    jobs = {
        "digits": lambda: bench_digits.measure(backend),
        "decode": lambda: bench_decode.measure(backend, sizes),
        "train": lambda: bench_train.measure(backend, sizes),
        "transformer": lambda: bench_transformer.measure(backend, sizes),
    }
    result = {}
    for name in benches:
        if name not in jobs:
            continue
        start = time.perf_counter()
        try:
            result[name] = jobs[name]()
        except Exception as exc:  # keep the other benchmarks of this backend
            traceback.print_exc()
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"{backend} {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return result


def _ref(outcome, label: str) -> dict[str, Any]:
    if outcome.error:
        print(f"  {label}: FAILED ({outcome.error}); log {outcome.log}", flush=True)
        return {"error": outcome.error}
    print(f"  {label}: {outcome.seconds:.1f} s", flush=True)
    return {**outcome.value["result"], "threads": outcome.value["threads"]}


def references(benches: list[str], sizes: dict[str, Any], env: dict[str, str]) -> dict:
    """Measure the references the chosen benchmarks compare to, each in its own process."""
    jobs = {
        "sgemm": (
            {"train"},
            "reference_sgemm",
            {"n": sizes["sgemm_n"], "repeats": sizes["sgemm_repeats"]},
        ),
        "seed_keras": (
            {"digits", "decode"},
            "reference_seed_keras",
            {"epochs": sizes["seed_epochs"], "decode": sizes["seed_decode"]},
        ),
        "torch": (
            {"decode", "train"},
            "reference_torch",
            {
                "decode_batch": sizes["n2w_decode_batch"],
                "max_length": sizes["n2w_max_length"],
                "min_time": sizes["decode_min_time"],
                "min_repeats": sizes["decode_min_repeats"],
                "train_warmup": sizes["train_warmup"],
                "train_steps": sizes["train_steps"],
            },
        ),
    }
    refs: dict[str, Any] = {}
    for name, (needed, module, kwargs) in jobs.items():
        if needed & set(benches):
            outcome = call(module, "measure", env=env, timeout=sizes["timeout"], **kwargs)
            refs[name] = _ref(outcome, module)
    return refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    backends_arg(parser)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--threads", type=int, help="pin every framework to N threads")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only these")
    args = parser.parse_args()

    import bench_batching
    import bench_decode
    import bench_digits
    import bench_loading
    import bench_memory
    import bench_startup
    import bench_train
    import bench_transformer

    sizes = dict(SIZES["quick" if args.quick else "full"])
    benches = args.only or list(BENCHES)
    backends = chosen_backends(args)
    env = thread_env(args.threads)
    timeout = sizes["timeout"]
    began = time.perf_counter()
    print(
        f"backends: {', '.join(backends)}; benchmarks: {', '.join(benches)}; "
        f"{'quick' if args.quick else 'full'} sizes; threads: {args.threads or 'defaults'}",
        flush=True,
    )

    print("fixtures", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "reference-torch-greedy.json").unlink(missing_ok=True)
    outcome = call("fixtures", "prepare", env=env, timeout=timeout)
    if outcome.error:
        sys.exit(f"fixtures failed: {outcome.error} (log: {outcome.log})")
    fixtures = outcome.value["result"]
    if sizes["n2w_max_length"] is None:
        sizes["n2w_max_length"] = fixtures["num2words_max_length"]

    print("references", flush=True)
    refs = references(benches, sizes, env)

    measured: dict[str, Any] = {}
    threads: dict[str, Any] = {}
    worker_benches = [b for b in benches if b in ("digits", "decode", "train", "transformer")]
    if worker_benches:
        for backend in backends:
            print(f"backend {backend}", flush=True)
            outcome = call(
                "run",
                "measure_backend",
                env=env,
                timeout=timeout,
                tag=backend,
                backend=backend,
                benches=worker_benches,
                sizes=sizes,
            )
            if outcome.error:
                print(f"  FAILED: {outcome.error}; log {outcome.log}", flush=True)
                measured[backend] = {b: {"error": outcome.error} for b in worker_benches}
            else:
                measured[backend] = outcome.value["result"]
                threads[backend] = outcome.value["threads"]
                print(f"  {outcome.seconds:.1f} s", flush=True)

    rows: list[dict[str, Any]] = []

    def of(bench: str) -> dict[str, Any]:
        return {b: m[bench] for b, m in measured.items() if bench in m}

    if "digits" in benches:
        rows += bench_digits.rows(of("digits"), refs)
    if "decode" in benches:
        rows += bench_decode.rows(of("decode"), refs, sizes)
    if "train" in benches:
        rows += bench_train.rows(of("train"), refs)
    if "transformer" in benches:
        rows += bench_transformer.rows(of("transformer"))
    memory: dict[str, Any] = {}
    if "memory" in benches:
        print("memory", flush=True)
        memory = bench_memory.run(backends, sizes, env)
        rows += bench_memory.rows(memory)
    loading: dict[str, Any] = {}
    if "loading" in benches:
        print("loading", flush=True)
        loading = bench_loading.run(sizes, env)
        rows += bench_loading.rows(loading)
    startup: dict[str, Any] = {}
    if "startup" in benches:
        print("startup", flush=True)
        startup = bench_startup.measure(sizes["startup_runs"], env)
        from seq2seq_kit.plugins import registry

        rows += bench_startup.rows(startup, sorted(registry().backends))
    batching: dict[str, Any] = {}
    if "batching" in benches:
        print("batching", flush=True)
        batching = bench_batching.run(sizes, env)
        rows += bench_batching.rows(batching)

    meta = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "threads_option": args.threads,
        "sizes": sizes,
        "backends": backends,
        "seconds": time.perf_counter() - began,
    }
    doc = {
        **meta,
        "threads": threads,
        "fixtures": fixtures,
        "references": refs,
        "measurements": measured,
        "memory": memory,
        "loading": loading,
        "startup": startup,
        "batching": batching,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "perf.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    text = report(meta, refs, threads, rows)
    (RESULTS / "perf.md").write_text(text)
    print(text)
    print(f"wrote {RESULTS / 'perf.json'} and {RESULTS / 'perf.md'}")


def report(
    meta: dict[str, Any], refs: dict[str, Any], threads: dict[str, Any], rows: list[dict[str, Any]]
) -> str:
    """perf.md: settings, the table, the references measured, the thread settings."""
    lines = [
        "# seq2seq-kit performance",
        "",
        f"{meta['date']}, {meta['machine']}; "
        f"{'QUICK smoke-test sizes (figures not meaningful)' if meta['quick'] else 'full'} "
        f"run, {meta['seconds'] / 60:.1f} min; threads: "
        f"{meta['threads_option'] or 'framework defaults'}. "
        "Ratio: figure / reference. Definitions and formulas: the docstrings of "
        "benchmarks/bench_*.py and reference_*.py.",
        "",
        markdown(rows),
        "",
        "## References (measured in this run)",
        "",
    ]
    sg = refs.get("sgemm") or {}
    if "gflops" in sg:
        lines.append(
            f"- sgemm peak: {sg['gflops']:.1f} GFLOP/s ({sg['n']}x{sg['n']} float32, "
            f"best of {sg['repeats']}, NumPy {sg['numpy']} / {sg['blas']})"
        )
    seed = refs.get("seed_keras") or {}
    if "train_seconds" in seed:
        how = f"extrapolated from {seed['epochs_run']} epochs" if seed["extrapolated"] else ""
        lines.append(
            f"- seed notebook (TensorFlow {seed['tensorflow']}): model.fit 300 epochs "
            f"{seed['train_seconds']:.1f} s {how}; decode_sequence "
            f"{seed['seconds_per_sequence']:.3f} s per sequence "
            f"({seed['sequences_decoded']} timed, mean {seed['mean_output_chars']:.1f} "
            f"characters), {seed['exact']}/9 exact"
        )
    tr = refs.get("torch") or {}
    if "decode_sequences_per_second" in tr:
        lines.append(
            f"- plain PyTorch {tr['torch']} ({tr['torch_threads']} threads): greedy "
            f"{tr['decode_sequences_per_second']:,.0f} seq/s at batch {tr['decode_batch']} "
            f"(cap {tr['max_length']}, {tr['decode_steps']} steps); training "
            f"{tr['train_tokens_per_second']:,.0f} target tokens/s"
        )
    for name, ref in refs.items():
        if "error" in ref:
            lines.append(f"- {name}: FAILED: {ref['error']}")
    lines += ["", "## Threads per process", ""]
    for name, ref in refs.items():
        if "threads" in ref:
            lines.append(f"- reference {name}: {json.dumps(ref['threads'])}")
    for backend, info in threads.items():
        lines.append(f"- backend {backend}: {json.dumps(info)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
