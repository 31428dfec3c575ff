"""``seq2seq-kit serve`` against slow and hostile clients: the real server (uvicorn) in a
subprocess listening on 127.0.0.1, raw sockets for clients. Each slow client is bounded in
count and time, and the servers' deadlines are short (1 s) so that each test takes a few
seconds; a bound a test waits for is several times the deadline it checks."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import seq2seq_kit  # noqa: E402
from seq2seq_kit.config import Config  # noqa: E402

SHORT = ["--header-timeout-s", "1", "--body-timeout-s", "1", "--keep-alive-timeout-s", "1"]
HEAD = b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config = Config()
    config.train.progress = False
    config.train.epochs = 2
    out = tmp_path_factory.mktemp("clients") / "digits"
    seq2seq_kit.train(config, out=out)
    return out


class Server:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log

    def connect(self, timeout=10.0):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stderr(self):
        return self.log.read_text(errors="replace")


def _read_line(stream, timeout):
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


@contextlib.contextmanager
def serving(model_dir, tmp_path, *flags, open_files=None, code=None):
    """The server as a user starts it (``code``: Python run instead of ``-m seq2seq_kit``,
    given the arguments in ``sys.argv``); ``open_files`` lowers its open-file limit."""

    def limit_files():
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    start = [sys.executable, *(["-c", code] if code else ["-m", "seq2seq_kit"]), "serve"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*start, "--model", str(model_dir), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            preexec_fn=limit_files if open_files else None,
        )
    try:
        line = _read_line(proc.stdout, 60)
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        assert found, (line, proc.poll(), log.read_text())
        server = Server(proc, int(found.group(1)), log)
        assert _healthz(server, within=30) == 200, server.stderr()
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _receive(sock, timeout):
    """What ``sock`` receives until the server closes it (a reset counts as closing), or
    None if it is still open after ``timeout`` seconds."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _response(raw):
    """(status, headers, JSON body) of one HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _error(raw, status):
    got, headers, body = _response(raw)
    assert got == status, raw
    assert headers["content-type"] == "application/json", raw
    assert set(body["error"]) == {"field", "message"}, raw
    return body["error"]["message"]


def _healthz(server, within):
    """The status of GET /healthz on a new connection, retried for ``within`` seconds
    while the server refuses or drops it; None if it never answered."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with server.connect(timeout=2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                raw = _receive(sock, 2)
            if raw:
                status = _response(raw)[0]
                if status == 200:
                    return status
        except OSError:
            pass
        time.sleep(0.2)
    return None


@pytest.fixture(scope="module")
def short(model_dir, tmp_path_factory):
    """A server with 1 s deadlines for heads, bodies and idle connections."""
    with serving(model_dir, tmp_path_factory.mktemp("short"), *SHORT) as server:
        yield server


def test_partial_heads_cannot_exhaust_the_file_descriptors(model_dir, tmp_path):
    pytest.importorskip("resource")
    # 300 clients each sending part of a head, against a server that may open 200 files:
    # it held every one for good, ran out of descriptors and refused /healthz
    with serving(model_dir, tmp_path, "--header-timeout-s", "1", open_files=200) as server:
        slow = []
        try:
            for _ in range(300):
                sock = server.connect()
                with contextlib.suppress(OSError):  # refused at once: reset
                    sock.sendall(HEAD)
                slow.append(sock)
            assert _healthz(server, within=20) == 200, server.stderr()
            deadline = time.monotonic() + 10
            for sock in slow:
                raw = _receive(sock, max(0.1, deadline - time.monotonic()))
                assert raw is not None, "a slow client is still connected"
                if raw:  # refused at once (503) or timed out (408), else reset
                    status = int(raw.split()[1])
                    assert status in (408, 503), raw
                    _error(raw, status)
        finally:
            for sock in slow:
                sock.close()
        assert _healthz(server, within=10) == 200
        assert "at most" in server.stderr() and "ulimit -n" in server.stderr()
        assert "Traceback" not in server.stderr()


def test_a_dripped_head_is_answered_408(short):
    with short.connect() as sock:
        sock.sendall(HEAD)
        raw = None
        for _ in range(80):  # a header byte every 0.1 s, for at most 8 s
            with contextlib.suppress(OSError):  # closed meanwhile: its answer is read below
                sock.sendall(b"X")
            raw = _receive(sock, 0.1)
            if raw is not None:
                break
        assert raw, "the server kept a head that drips for 8 s"
    message = _error(raw, 408)
    assert "serve.header_timeout_s" in message and "1 s" in message


def test_a_stalled_body_is_answered_408(short):
    with short.connect() as sock:
        sock.sendall(
            HEAD + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"texts"'
        )
        raw = _receive(sock, 10)
    assert raw, "the server kept a stalled body for 10 s"
    assert "serve.body_timeout_s" in _error(raw, 408)
    assert _healthz(short, within=10) == 200
    assert "Traceback" not in short.stderr() and "internal error" not in short.stderr()


def test_a_client_gone_mid_body_leaves_no_traceback(short):
    # it was logged as an internal error, with a traceback (twice: the app's and uvicorn's)
    with short.connect() as sock:
        sock.sendall(
            HEAD + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"te'
        )
        time.sleep(0.3)  # the body is being read
    assert _healthz(short, within=10) == 200
    time.sleep(0.3)  # whatever the server logs of it is written
    assert "Traceback" not in short.stderr() and "internal error" not in short.stderr()


def test_idle_connections_are_closed(short):
    with short.connect() as sock:  # never sends a byte
        assert _receive(sock, 10) == b""
    with short.connect() as sock:  # keep-alive, idle after its answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = _receive(sock, 10)
    assert raw is not None and raw.startswith(b"HTTP/1.1 200 ")


def test_a_request_that_is_not_http_gets_a_json_400(short):
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", b"\x16\x03\x01\x02"):
        with short.connect() as sock:
            sock.sendall(garbage)
            raw = _receive(sock, 10)
        assert "not valid HTTP/1.1" in _error(raw, 400)
    assert _healthz(short, within=10) == 200


def test_connections_over_the_limit_are_refused(model_dir, tmp_path):
    flags = ["--max-connections", "3", "--keep-alive-timeout-s", "60"]
    with serving(model_dir, tmp_path, *flags) as server:
        held = [server.connect() for _ in range(3)]
        try:
            for sock in held:  # answered: each is open and counted by the server
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            with server.connect() as extra:
                raw = _receive(extra, 10)
            message = _error(raw, 503)
            assert "serve.max_connections" in message
            assert _response(raw)[1]["retry-after"] == "1"
        finally:
            for sock in held:
                sock.close()
        assert _healthz(server, within=10) == 200


def test_sigterm_answers_a_half_sent_body_and_stops(model_dir, tmp_path):
    # the server waited for the rest of the body, as long as its client cared to wait
    with serving(model_dir, tmp_path) as server:
        with server.connect() as sock:
            sock.sendall(
                HEAD + b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            # sent when the server starts reading the body
            assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b'{"texts"')
            server.proc.send_signal(signal.SIGTERM)
            raw = _receive(sock, 10)
        assert raw, "no answer 10 s after SIGTERM"
        assert "stopping" in _error(raw, 503)
        assert server.proc.wait(timeout=20) == 0, server.stderr()


SLOW_DECODING = """
import sys, time
from seq2seq_kit.api import Translator
decode_ids = Translator.decode_ids
def slow(self, *args, **kwargs):
    print("decoding", file=sys.stderr, flush=True)
    time.sleep(3)
    return decode_ids(self, *args, **kwargs)
Translator.decode_ids = slow
from seq2seq_kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_waits_for_requests_at_most_shutdown_timeout_s(model_dir, tmp_path):
    flags = ["--shutdown-timeout-s", "0.5"]
    with serving(model_dir, tmp_path, *flags, code=SLOW_DECODING) as server:
        with server.connect() as sock:
            body = b'{"texts": ["3"]}'
            sock.sendall(
                HEAD
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            deadline = time.monotonic() + 10
            while "decoding" not in server.stderr() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "decoding" in server.stderr()  # for 3 s from now
            server.proc.send_signal(signal.SIGTERM)
            raw = _receive(sock, 10)
        assert raw, "no answer 10 s after SIGTERM"
        assert "serve.shutdown_timeout_s" in _error(raw, 503)
        assert server.proc.wait(timeout=20) == 0, server.stderr()


def _translate_request(text, close=False):
    body = json.dumps({"texts": [text]}).encode()
    extra = b"Connection: close\r\n" if close else b""
    return (
        HEAD
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


def test_a_client_gone_with_pipelined_requests_leaves_no_traceback(model_dir, tmp_path):
    # the second request's answer was written to the closed connection: uvicorn logged
    # "Exception in ASGI application" and a RuntimeError with its traceback
    hook = SLOW_DECODING.replace("time.sleep(3)", "time.sleep(0.5)")
    with serving(model_dir, tmp_path, code=hook) as server:
        with server.connect() as sock:
            sock.sendall(b"".join(_translate_request(t) for t in ("1", "2", "3")))
            # the first answer; the second request is decoding (0.5 s) when the socket closes
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # decoded after the second request: its answer was written (or dropped) before this
        with server.connect() as sock:
            sock.sendall(_translate_request("4", close=True))
            raw = _receive(sock, 10)
        assert raw and raw.startswith(b"HTTP/1.1 200 "), raw
        assert server.stderr().count("decoding") == 3  # the third was never started
        assert "Traceback" not in server.stderr() and "Exception" not in server.stderr()


def test_a_head_over_max_header_bytes_is_answered_431(short):
    # a head of any size was kept whole: an 8 MB header was answered 200, and the server
    # grew by the size of a head sent for as long as header_timeout_s allowed
    with short.connect() as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65000 + b"\r\n\r\n")
        raw = _receive(sock, 10)
    assert raw and raw.startswith(b"HTTP/1.1 200 "), raw  # under the default 64 KiB
    with short.connect() as sock:
        sent = 0
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(OSError):  # refused and closed while sending: read below
            for _ in range(8 << 4):  # never ends: 8 MiB at most
                sock.sendall(b"a" * (1 << 16))
                sent += 1 << 16
        raw = _receive(sock, 10)
    assert raw, "no answer to an 8 MiB header"
    assert "serve.max_header_bytes" in _error(raw, 431)
    assert sent < 8 << 20, "the head was read whole"
    with short.connect() as sock:  # a head after another request in the same read
        big = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + big)
        raw = _receive(sock, 10)
    # the first request's answer may be dropped: the connection is closed at the 431
    assert raw and b"HTTP/1.1 431 " in raw, raw
    _error(raw[raw.index(b"HTTP/1.1 431 ") :], 431)
    assert _healthz(short, within=10) == 200
    assert "Traceback" not in short.stderr()
