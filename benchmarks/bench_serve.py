"""Load on ``seq2seq-kit serve``: requests per second and latency with 1, 8 and 64
concurrent clients, against the same texts decoded in-process.

The server runs in a subprocess on 127.0.0.1 with one thread for the numeric libraries
(``OMP_NUM_THREADS=1`` and the other variables of ``_common.thread_env``; the process has
its event loop and one decoding thread, not pinned to a core), serving one fixture model
(``fixtures.py``: the digits model, trained on the nine digits, and the num2words-shaped
model with random weights, whose outputs run to the length cap) with the default
``[serve]`` settings (5 ms batching window, at most 256 texts per batch) unless ``--serve-flag``
says otherwise. The clients send one-text greedy requests back to back, each on its own
keep-alive connection, cycling through ``--texts`` distinct texts, until ``--requests``
requests in all or ``--seconds`` have passed. The load generator is ``wrk`` (one thread,
a Lua script; Debian's ``wrk`` package) where it is on PATH, else a hand-written asyncio
HTTP/1.1 client in this process (``--client`` chooses): client and server share the
machine's cores, and an HTTP library's client (httpx: about 0.7 ms of CPU per request)
would take a core from the server it measures.

Figures per model and client count: requests (= texts) per second, median and 99th
percentile latency (ms, from sending a request to having read its reply), failed requests
(any reply but 200, or a transport error: the script exits 1 if any), the mean texts per
decoding call (``mean_batch``, from the server's ``GET /v1/stats``), the share of a core
used by the server (``server_cpu``) and by the load generator (``client_cpu``), and the
1-minute load average after the run. References: texts per second of
``Translator.hypotheses`` on the same texts in this process, in one batch of all of them
(``in_process``: the best batching) and in batches of 64 (``in_process_64``: the batch
that 64 clients sending one text each can form). The ratios server / in-process say what serving
costs: HTTP and JSON, the batching window, and batches no larger than the clients waiting.

    python benchmarks/bench_serve.py [--requests 50000] [--seconds 10] [--clients 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import table, thread_env, write

HERE = Path(__file__).resolve().parent

#: The batch size of the second in-process reference: the batch that 64 clients sending
#: one text each can form.
MAX_BATCH = 64


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


def in_process(model: Path, texts: list[str], batch_size: int) -> float:
    """Texts per second of ``hypotheses`` on every text, ``batch_size`` texts per batch
    (after a warm-up call)."""
    import seq2seq_kit

    translator = seq2seq_kit.load(model, backend="numpy")
    translator.hypotheses(texts[:64], batch_size=batch_size)
    start = time.perf_counter()
    translator.hypotheses(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


class Server:
    """``seq2seq-kit serve --model DIR --port 0`` in a subprocess; ``url`` once it listens."""

    def __init__(self, model: Path, flags: list[str] = ()):
        env = thread_env(1)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq_kit", "serve", "--model", str(model)]
            + ["--port", "0", "--backend", "numpy", *flags],
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


def load(
    url: str, texts: list[str], clients: int, requests: int, seconds: float, generator: str
) -> dict[str, Any]:
    """``clients`` keep-alive connections sending one-text requests back to back, until
    ``requests`` requests or ``seconds`` have passed, from ``wrk`` or the Python client."""
    bodies = [json.dumps({"texts": [text]}).encode() for text in texts]
    if generator == "wrk":
        return load_wrk(url, bodies, clients, requests, seconds)
    return asyncio.run(load_python(url, bodies, clients, requests, seconds))


#: The wrk script: POSTs the bodies in turn on every connection, stops after LIMIT
#: requests (saying on stderr after how many nanoseconds: wrk's own duration is the -d
#: it was given), and prints its figures as one JSON line (latencies in microseconds).
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local limit, sent, failed, started, stopped = %(limit)d, 0, 0, 0, false
local function now_ns()
  local clock = io.popen("date +%%s%%N")
  local ns = tonumber(clock:read("*a"))
  clock:close()
  return ns
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
init = function(args) started = now_ns() end
request = function()
  sent = sent + 1
  return wrk.format(nil, "/v1/translate", nil, bodies[(sent - 1) %% #bodies + 1])
end
response = function(status, headers, body)
  if status ~= 200 and failed == 0 then
    failed = 1
    io.stderr:write("first failure: " .. status .. " " .. body:sub(1, 200) .. "\\n")
  end
  if sent >= limit and not stopped then
    stopped = true
    io.stderr:write(string.format("stopped after %%d ns\\n", now_ns() - started))
    wrk.thread:stop()
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "us": %%d, "p50_us": %%d, "p99_us": %%d, "failures": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def load_wrk(url: str, bodies: list[bytes], clients: int, requests: int, seconds: float) -> dict:
    """The run by ``wrk`` (one thread, ``clients`` connections): a C load generator
    costs the shared cores a few percent where a Python client costs a core."""
    import resource
    import tempfile

    listed = ", ".join("[==[" + body.decode() + "]==]" for body in bodies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % {"bodies": listed, "limit": requests})
        script.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"]
            + ["-s", script.name, f"{url}/v1/translate"],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout} {out.stderr}")
    figures = json.loads(found[-1])
    elapsed = figures["us"] / 1e6
    stopped = re.search(r"stopped after (\d+) ns", out.stderr)
    if stopped:  # the request limit came first
        elapsed = min(elapsed, int(stopped.group(1)) / 1e9)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "requests": figures["requests"],
        "seconds": elapsed,
        "requests_per_s": (figures["requests"] - figures["failures"]) / elapsed,
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "failures": figures["failures"],
        "first_failure": re.sub(r"stopped after \d+ ns\n?", "", out.stderr).strip()[:300],
        "client_cpu": cpu / elapsed,
    }


async def load_python(
    url: str, bodies: list[bytes], clients: int, requests: int, seconds: float
) -> dict:
    """The run by ``clients`` asyncio connections in this process, each writing its request
    and reading the reply by hand (HTTP/1.1 keep-alive, Content-Length bodies): about 40 µs
    of CPU per request where httpx takes 700, though still a share of a core at thousands
    of requests per second."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST /v1/translate HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    latencies: list[float] = []
    failures: list[str] = []
    sent = 0

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        begin = time.perf_counter()
        writer.write(head + b"%d\r\n\r\n" % len(body) + body)
        headers = await reader.readuntil(b"\r\n\r\n")
        found = re.search(rb"\r\ncontent-length: *(\d+)", headers, re.IGNORECASE)
        if not found:
            raise RuntimeError(f"a reply without Content-Length: {headers[:200]!r}")
        reply = await reader.readexactly(int(found.group(1)))
        if headers[9:12] != b"200":
            failures.append(f"{headers[9:12].decode()} {reply[:200].decode()}")
            return
        latencies.append(time.perf_counter() - begin)

    async def connect(index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, int(port))
        await one(reader, writer, bodies[index % len(bodies)])  # warm-up, untimed
        return reader, writer

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        try:
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                await one(reader, writer, bodies[sent % len(bodies)])
        except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    connections = await asyncio.gather(*(connect(i) for i in range(clients)))
    latencies.clear()
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    await asyncio.gather(*(client(*c) for c in connections))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
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


def server_stats(url: str) -> dict[str, Any]:
    """``GET /v1/stats`` of the served model."""
    with urllib.request.urlopen(f"{url}/v1/stats", timeout=30) as reply:
        return json.load(reply)["models"]["default"]


def process_cpu(pid: int) -> float:
    """Seconds of CPU the process ``pid`` has used (user + system; NaN off Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50000, help="requests per client count")
    parser.add_argument("--seconds", type=float, default=10, help="time per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--texts", type=int, default=600, help="distinct texts, sent in turn")
    parser.add_argument("--model", choices=["digits", "num2words"], action="append")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (auto: wrk where it is on PATH, else the Python client)",
    )
    parser.add_argument(
        "--serve-flag",
        action="append",
        default=[],
        help="a flag for seq2seq-kit serve, as --serve-flag=--batch-window-ms=2 (repeatable)",
    )
    args = parser.parse_args(argv)
    generator = args.client
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    ensure_fixtures()
    rows: list[dict[str, Any]] = []
    for name in args.model or ["digits", "num2words"]:
        model, texts = model_texts(name, args.texts)
        reference = in_process(model, texts, len(texts))
        reference_64 = in_process(model, texts, MAX_BATCH)
        server = Server(model, args.serve_flag)
        try:
            for text in texts[:20]:  # warm-up, untimed
                warm_up = urllib.request.Request(
                    f"{server.url}/v1/translate",
                    json.dumps({"texts": [text]}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(warm_up, timeout=60).read()
            for clients in args.clients:
                before, cpu = server_stats(server.url), process_cpu(server.proc.pid)
                figures = load(server.url, texts, clients, args.requests, args.seconds, generator)
                cpu = process_cpu(server.proc.pid) - cpu
                after = server_stats(server.url)
                calls = after["decode_calls"] - before["decode_calls"]
                decoded = after["decoded_texts"] - before["decoded_texts"]
                rows.append(
                    {
                        "model": name,
                        "clients": clients,
                        "client": generator,
                        **figures,
                        "mean_batch": decoded / calls if calls else float("nan"),
                        "in_process_texts_per_s": reference,
                        "server/in-process": figures["requests_per_s"] / reference,
                        "in_process_64_texts_per_s": reference_64,
                        "server/in-process_64": figures["requests_per_s"] / reference_64,
                        "server_cpu": cpu / figures["seconds"],
                        "load_avg": os.getloadavg()[0],
                    }
                )
                print(
                    f"{name}, {clients} clients ({generator}): "
                    f"{figures['requests_per_s']:.1f} requests/s, "
                    f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                    f"{figures['failures']} failed, {rows[-1]['mean_batch']:.1f} texts per batch",
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
                "mean_batch",
                "in_process_texts_per_s",
                "server/in-process",
                "in_process_64_texts_per_s",
                "server/in-process_64",
                "server_cpu",
                "client_cpu",
                "load_avg",
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
