"""Load on ``seq2seq-kit serve``: requests per second and latency with 1, 8 and 64
concurrent clients, against the same texts decoded in-process in one batch.

The server runs in a subprocess on 127.0.0.1 with one thread for the numeric libraries
(``OMP_NUM_THREADS=1`` and the other variables of ``_common.thread_env``), serving one
fixture model (``fixtures.py``: the digits model, trained on the nine digits, and the
num2words-shaped model with random weights, whose outputs run to the length cap) with the
default ``[serve]`` settings (5 ms batching window, 64 texts per batch). Each client
(``asyncio`` and one ``httpx.AsyncClient``) sends one-text greedy requests back to back
until ``--requests`` requests in all or ``--seconds`` have passed, after an untimed
warm-up request per client.

Figures per model and client count: requests (= texts) per second, median and 99th
percentile latency (ms, from sending a request to having read its reply), failed requests
(any reply but 200, or a transport error: the script exits 1 if any), and the share of a
core the clients' process used (``client_cpu``: 1.0 means the load generator, not the
server, may be the limit). Reference: texts
per second of ``Translator.hypotheses`` on the same texts in one call in this process
(one batch, one thread). The ratio server / in-process says what serving costs against
the best batching: HTTP and JSON, the batching window, and batches no larger than the
clients waiting. Client and server share the machine's cores.

    python benchmarks/bench_serve.py [--requests 600] [--seconds 20] [--clients 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import table, thread_env, write

HERE = Path(__file__).resolve().parent


def ensure_fixtures() -> None:
    """Make the fixture models (``fixtures.prepare``) unless they are there."""
    import fixtures

    if (
        not (fixtures.DIGITS_MODEL / "model.json").exists()
        or not (fixtures.NUM2WORDS_MODEL_DIR / "model.json").exists()
    ):
        fixtures.prepare()


def model_texts(name: str, count: int) -> tuple[Path, list[str]]:
    """The model directory and ``count`` source texts for the model ``name``."""
    import fixtures

    if name == "digits":
        return fixtures.DIGITS_MODEL, [fixtures.NINE[i % 9] for i in range(count)]
    return fixtures.NUM2WORDS_MODEL_DIR, [s for s, _ in fixtures.num2words_pairs(count)]


def in_process(model: Path, texts: list[str]) -> float:
    """Texts per second of one ``hypotheses`` call on every text (after a warm-up call)."""
    import seq2seq_kit

    translator = seq2seq_kit.load(model, backend="numpy")
    translator.hypotheses(texts[:64], batch_size=len(texts))
    start = time.perf_counter()
    translator.hypotheses(texts, batch_size=len(texts))
    return len(texts) / (time.perf_counter() - start)


class Server:
    """``seq2seq-kit serve --model DIR --port 0`` in a subprocess; ``url`` once it listens."""

    def __init__(self, model: Path):
        env = thread_env(1)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq_kit", "serve", "--model", str(model)]
            + ["--port", "0", "--backend", "numpy"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(120)
        found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line[0] if line else "")
        if not found:
            self.stop()
            raise RuntimeError(f"the server did not start: {line} {self.proc.stderr.read()}")
        self.url = found.group(1)

    def stop(self) -> int | None:
        """SIGTERM, then kill after 30 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


async def load(url: str, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` clients sending one-text requests back to back: figures of the run.
    Each client has its own ``httpx.AsyncClient`` and keep-alive connection (one pool
    shared by 64 connections costs the load generator more than the server)."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    sent = 0

    async def one(http: httpx.AsyncClient, text: str) -> None:
        begin = time.perf_counter()
        try:
            reply = await http.post("/v1/translate", json={"texts": [text]})
            if reply.status_code != 200:
                failures.append(f"{reply.status_code} {reply.text[:200]}")
                return
            reply.json()
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        latencies.append(time.perf_counter() - begin)

    https = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(clients)]
    try:
        # warm-up: each client opens its connection
        await asyncio.gather(*(one(http, texts[i % len(texts)]) for i, http in enumerate(https)))
        latencies.clear()
        deadline = time.perf_counter() + seconds

        async def client(http: httpx.AsyncClient) -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                text = texts[sent % len(texts)]
                sent += 1
                await one(http, text)

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(http) for http in https))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        for http in https:
            await http.aclose()
    latencies.sort()
    return {
        "requests": len(latencies) + len(failures),
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan"),
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",
        "client_cpu": cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per client count")
    parser.add_argument("--seconds", type=float, default=20, help="time per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--model", choices=["digits", "num2words"], action="append")
    args = parser.parse_args(argv)
    ensure_fixtures()
    rows: list[dict[str, Any]] = []
    for name in args.model or ["digits", "num2words"]:
        model, texts = model_texts(name, args.requests)
        reference = in_process(model, texts)
        server = Server(model)
        try:
            for clients in args.clients:
                figures = asyncio.run(load(server.url, texts, clients, args.requests, args.seconds))
                rows.append(
                    {
                        "model": name,
                        "clients": clients,
                        **figures,
                        "in_process_texts_per_s": reference,
                        "server/in-process": figures["requests_per_s"] / reference,
                    }
                )
                print(
                    f"{name}, {clients} clients: {figures['requests_per_s']:.1f} requests/s, "
                    f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                    f"{figures['failures']} failed",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            status = server.stop()
        if status != 0:
            print(f"error: the {name} server exited with status {status}", file=sys.stderr)
            return 1
    path = write("serve", rows)
    print(
        table(
            rows,
            [
                "model",
                "clients",
                "requests",
                "requests_per_s",
                "p50_ms",
                "p99_ms",
                "failures",
                "in_process_texts_per_s",
                "server/in-process",
                "client_cpu",
            ],
        )
    )
    print(f"\n(written to {path.relative_to(HERE.parent)})")
    failed = [r for r in rows if r["failures"]]
    for row in failed:
        print(
            f"error: {row['model']}, {row['clients']} clients: {row['failures']} failed "
            f"requests, first: {row['first_failure']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.update(thread_env(1))  # before numpy is imported: one thread in-process too
    sys.exit(main())
