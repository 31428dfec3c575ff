"""``seq2seq-kit serve`` when a request runs out of memory, and when a model is reloaded
from its directory (``POST /v1/models/NAME/reload``, SIGHUP) while requests are served."""

import asyncio
import gc
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref

import numpy as np
import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

import seq2seq_kit  # noqa: E402
from seq2seq_kit.config import Config, ServeConfig  # noqa: E402
from seq2seq_kit.serving.app import create_app  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 beside httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RELOAD = "/v1/models/default/reload"
JSON = {"Content-Type": "application/json"}


def _train(out, attention, epochs):
    config = Config()
    config.train.progress = False
    config.model.attention = attention
    config.train.epochs = epochs
    seq2seq_kit.train(config, out=out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """digits with attention, 150 epochs: translates all nine ("3" -> "three")."""
    return _train(tmp_path_factory.mktemp("resilience") / "trained", "general", 150)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """Another model, of another spec (no attention), 2 epochs: other translations."""
    return _train(tmp_path_factory.mktemp("resilience") / "retrained", "none", 2)


@pytest.fixture
def served_dir(trained, tmp_path):
    """A copy of ``trained``, the directory a server loads and a test saves over."""
    return shutil.copytree(trained, tmp_path / "served")


def _first(reply):
    assert reply.status_code == 200, reply.text
    return [t["hypotheses"][0]["text"] for t in reply.json()["translations"]]


def _sha(directory):
    return json.loads((directory / "model.json").read_text())["weights"]["sha256"]


def _concurrently(send, arguments):
    threads = [threading.Thread(target=send, args=(a,)) for a in arguments]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --------------------------------------------------------------------------------------
# Out of memory
# --------------------------------------------------------------------------------------


class OutOfMemoryError(RuntimeError):
    """Named as PyTorch's, which the core recognises without importing PyTorch."""


def _memory_of(translator, rows_that_fit, error, freed=None):
    """Make ``translator``'s backend model run out of memory (raise ``error``) at any
    decoder step of more than ``rows_that_fit`` rows; each step holds an array in its
    frame, as a framework's step holds its tensors, and puts a weak reference to it in
    ``freed`` (checked free before each step that fits). Returns the row counts of the
    steps, one list per call (a greedy call's steps all have its rows)."""
    model = translator.model
    model = getattr(model, "__wrapped__", model)  # the backend's model, under its checks
    step, steps = model.step, []

    def bounded(prev, state):
        if freed is not None and len(prev) <= rows_that_fit:
            assert all(ref() is None for ref in freed), "a failed step's memory is still held"
        held = np.ones((len(prev), 1024), np.float32)  # noqa: F841 (held by the frame)
        steps.append(len(prev))
        if len(prev) > rows_that_fit:
            if freed is not None:
                freed.append(weakref.ref(held))
            raise error
        return step(prev, state)

    model.step = bounded
    return steps


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_batch_out_of_memory_is_retried_in_halves_and_a_request_alone_gets_413(trained, error):
    translator = seq2seq_kit.load(trained)
    expected = dict(zip("1234", translator.translate(list("1234")), strict=True))
    steps = _memory_of(translator, 2, error)
    # a round starts once 4 texts wait (max_batch), or after the window
    settings = ServeConfig(batch_window_ms=500, max_batch=4)
    with TestClient(create_app({"default": translator}, settings)) as client:
        replies = {}

        def send(text):
            replies[text] = client.post("/v1/translate", json={"texts": [text]})

        _concurrently(send, "1234")
        stats = client.get("/v1/stats").json()["models"]["default"]
        # four requests of one text, merged: out of memory at four rows, served in halves
        assert {text: _first(reply)[0] for text, reply in replies.items()} == expected
        assert max(steps) == 4, steps  # they were merged (and 4 rows ran out of memory)
        assert stats["failed_calls"] == 1 and stats["decode_calls"] == 3, stats

        # one request of three texts runs out of memory alone: 413, naming what to lower
        reply = client.post("/v1/translate", json={"texts": ["1", "2", "3"], "max_length": 9})
        assert reply.status_code == 413, reply.text
        message = reply.json()["error"]["message"]
        assert reply.json()["error"]["field"] is None
        assert message.startswith(f"out of memory decoding this request ({type(error).__name__}")
        assert "the texts per request (3)" in message and "max_length (9)" in message
        # the model stays loaded: the next request is served
        assert _first(client.post("/v1/translate", json={"texts": ["3"]})) == ["three"]


def test_the_memory_of_a_call_out_of_memory_is_freed_before_its_halves_decode(trained):
    # decoding wraps the framework's error (seq2seq_kit.errors.allocating), which makes a
    # reference cycle through the failed call's frames: with the garbage collector off,
    # only clearing those frames frees the arrays they hold before the retry
    translator = seq2seq_kit.load(trained)
    freed = []
    steps = _memory_of(translator, 1, MemoryError(), freed)
    settings = ServeConfig(batch_window_ms=500, max_batch=2)
    enabled = gc.isenabled()
    gc.disable()
    try:
        with TestClient(create_app({"default": translator}, settings)) as client:
            replies = []
            _concurrently(
                lambda text: replies.append(client.post("/v1/translate", json={"texts": [text]})),
                "12",
            )
    finally:
        if enabled:
            gc.enable()
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    assert max(steps) == 2 and freed and all(ref() is None for ref in freed)


def test_other_errors_of_a_request_alone_are_still_500(trained):
    translator = seq2seq_kit.load(trained)
    _memory_of(translator, 1, ValueError("not a memory error"))
    with TestClient(create_app({"default": translator})) as client:
        reply = client.post("/v1/translate", json={"texts": ["1", "2"]})
    assert reply.status_code == 500
    assert reply.json()["error"]["message"] == "decoding failed: ValueError: not a memory error"


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


class Server:
    """``seq2seq-kit serve --port 0 ARGS`` in a subprocess: ``url`` once it listens, its
    standard output's lines in ``lines`` as they come, its standard error in a file."""

    def __init__(self, args, log):
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "seq2seq_kit", "serve", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=_env(),
            )
        self.lines = []
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.listening.wait(90), (self.lines, self.proc.poll(), self.stderr())
        found = re.search(r"on (http://127\.0\.0\.1:\d+) ", self.lines[0])
        assert found, self.lines
        self.url = found.group(1)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.listening.set()

    def stderr(self):
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern, timeout=60):
        """The first line of standard output matching ``pattern``, waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line {pattern!r} in {self.lines}; stderr: {self.stderr()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def _until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _address_space(pid):
    """The address space of process ``pid`` now, in bytes (VmSize)."""
    with open(f"/proc/{pid}/status") as file:
        status = file.read()
    return int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024


def test_torch_out_of_memory_under_a_memory_limit_gets_a_json_413_and_serving_goes_on(
    trained, tmp_path
):
    pytest.importorskip("seq2seq_kit_torch")
    if not os.path.exists("/proc/self/status") or not hasattr(resource, "prlimit"):
        pytest.skip("needs Linux: /proc and prlimit")
    args = ["--model", str(trained), "--backend", "torch", "--max-beam", "1024"]
    server = Server([*args, "--max-body-bytes", str(1 << 22)], tmp_path / "server.log")
    try:
        small = {"texts": ["3", "42"], "beam": 2}
        # any backend decodes as NumPy's does (the conformance suite holds them to it)
        expected = seq2seq_kit.load(trained).translate(["3", "42"], beam=2)
        assert _first(httpx.post(f"{server.url}/v1/translate", json=small, timeout=60)) == expected
        # as `ulimit -v` would: the address space the server holds now, and 1 GiB more
        limit = _address_space(server.proc.pid) + (1 << 30)
        resource.prlimit(server.proc.pid, resource.RLIMIT_AS, (limit, limit))
        # a beam of 512 over 64 texts of 999 digits: the attention memory expanded to the
        # beam is 64 x 512 x 999 x 32 float32, 4.2 GB in one tensor
        huge = {"texts": ["123456789" * 111] * 64, "beam": 512, "max_length": 20}
        reply = httpx.post(f"{server.url}/v1/translate", json=huge, timeout=120)
        assert reply.status_code == 413, reply.text
        assert reply.headers["content-type"] == "application/json"
        message = reply.json()["error"]["message"]
        assert message.startswith("out of memory decoding this request (RuntimeError: ")
        assert "can't allocate memory" in message
        for size in ("texts per request (64)", "999 source tokens", "max_length (20)"):
            assert size in message
        assert "beam (512)" in message
        # the model stays loaded and the limit stays: the next request is served
        reply = httpx.post(f"{server.url}/v1/translate", json=small, timeout=60)
        assert _first(reply) == expected
        assert resource.prlimit(server.proc.pid, resource.RLIMIT_AS)[0] == limit
    finally:
        assert server.stop() == 0, server.stderr()
    assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------------------
# Reload
# --------------------------------------------------------------------------------------


def _client(served_dir, **settings):
    translator = seq2seq_kit.load(served_dir)
    app = create_app(
        {"default": translator}, ServeConfig(**settings), sources={"default": served_dir}
    )
    return TestClient(app), translator


def test_reload_is_off_unless_allowed(served_dir, retrained):
    client, _ = _client(served_dir)
    with client:
        seq2seq_kit.load(retrained).save(served_dir)
        reply = client.post(RELOAD, headers=JSON)
        assert reply.status_code == 403
        assert "--allow-reload" in reply.json()["error"]["message"]
        assert _first(client.post("/v1/translate", json={"texts": ["3"]})) == ["three"]


def test_reload_swaps_in_the_directory_as_it_is_on_disk(served_dir, trained, retrained):
    client, _ = _client(served_dir, allow_reload=True)
    new_texts = seq2seq_kit.load(retrained).translate(["3", "12"])
    with client:
        [before] = client.get("/v1/models").json()["models"]
        assert before["weights_sha256"] == _sha(trained)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", before["loaded_at"])
        seq2seq_kit.load(retrained).save(served_dir)  # retrained to the same path
        reply = client.post(RELOAD, headers=JSON)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"] == "default" and body["weights_sha256"] == _sha(retrained)
        assert body["previous"] == {
            "loaded_at": before["loaded_at"],
            "weights_sha256": _sha(trained),
        }
        [after] = client.get("/v1/models").json()["models"]
        assert (
            after["weights_sha256"] == _sha(retrained) and after["loaded_at"] > before["loaded_at"]
        )
        assert after["has_attention"] is False and before["has_attention"] is True
        assert _first(client.post("/v1/translate", json={"texts": ["3", "12"]})) == new_texts
        # the new model's own checks: attention is refused now
        reply = client.post("/v1/translate", json={"texts": ["3"], "attention": True})
        assert reply.status_code == 422


@pytest.mark.parametrize("damage", ["truncated weights", "edited model.json", "no model.json"])
def test_a_damaged_directory_is_refused_and_the_old_model_keeps_serving(
    served_dir, retrained, damage
):
    client, _ = _client(served_dir, allow_reload=True)
    with client:
        listing = client.get("/v1/models").json()
        seq2seq_kit.load(retrained).save(served_dir)
        if damage == "truncated weights":
            weights = served_dir / "weights.safetensors"
            weights.write_bytes(weights.read_bytes()[:-100])
        elif damage == "edited model.json":
            doc = json.loads((served_dir / "model.json").read_text())
            doc["max_length"] += 1
            (served_dir / "model.json").write_text(json.dumps(doc))
        else:
            (served_dir / "model.json").unlink()
        reply = client.post(RELOAD, headers=JSON)
        assert reply.status_code == 409, reply.text
        message = reply.json()["error"]["message"]
        assert message.startswith(f"{served_dir} was not reloaded: ")
        assert "model 'default' keeps serving the weights loaded at" in message
        assert {"truncated weights": "SHA-256", "edited model.json": "max_length"}.get(
            damage, "missing"
        ) in message
        assert client.get("/v1/models").json() == listing
        assert _first(client.post("/v1/translate", json={"texts": ["3"]})) == ["three"]


def test_requests_accepted_before_a_reload_finish_on_the_old_model(served_dir, trained, retrained):
    client, old = _client(served_dir, allow_reload=True, batch_window_ms=0)
    old_texts = seq2seq_kit.load(trained).translate(["3", "12"])
    new_texts = seq2seq_kit.load(retrained).translate(["3", "12"])
    decode_ids = old.decode_ids
    entered, release = threading.Event(), threading.Event()

    def held(rows, **options):  # the old model's worker, busy until released
        entered.set()
        assert release.wait(30)
        return decode_ids(rows, **options)

    old.decode_ids = held
    replies = {}

    def send(name, text):
        replies[name] = client.post("/v1/translate", json={"texts": [text]})

    with client:
        decoding = threading.Thread(target=send, args=("decoding", "3"))
        decoding.start()
        assert entered.wait(30)
        queued = threading.Thread(target=send, args=("queued", "12"))  # behind it
        queued.start()
        time.sleep(0.3)
        seq2seq_kit.load(retrained).save(served_dir)
        reload = client.post(RELOAD, headers=JSON)
        later = threading.Thread(target=send, args=("later", "12"))  # after the reload
        later.start()
        time.sleep(0.3)
        release.set()
        for thread in (decoding, queued, later):
            thread.join()
    assert reload.status_code == 200, reload.text
    # accepted by the old model: decoded by it, though it was replaced meanwhile
    assert _first(replies["decoding"]) == old_texts[:1]
    assert _first(replies["queued"]) == old_texts[1:]
    assert _first(replies["later"]) == new_texts[1:]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "words"),
    [
        ("/v1/models/nope/reload", JSON, None, 404, "no model named 'nope'"),
        (RELOAD, {}, None, 415, "Content-Type: application/json"),
        (RELOAD, JSON, b'{"force": true}', 422, "takes no options"),
    ],
)
def test_reload_requests_are_checked(served_dir, path, headers, body, status, words):
    client, _ = _client(served_dir, allow_reload=True)
    with client:
        reply = client.post(path, headers=headers, content=body)
        assert reply.status_code == status and words in reply.json()["error"]["message"]
        assert client.get(RELOAD).status_code == 405


def test_a_model_given_loaded_cannot_be_reloaded(trained):
    app = create_app({"default": seq2seq_kit.load(trained)}, ServeConfig(allow_reload=True))
    with TestClient(app) as client:
        reply = client.post(RELOAD, headers=JSON)
    assert reply.status_code == 409 and "given to the server loaded" in reply.text


class _HeldLoads:
    """``seq2seq_kit.translator.load`` counted, the first call held until released (a
    load under way), each call made by ``make(call number, args...)``."""

    def __init__(self, make):
        self.make, self.calls = make, []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls.append(args[0])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.make(len(self.calls), *args, **kwargs)

    async def entering(self):
        while not self.entered.is_set():
            await asyncio.sleep(0.01)


def _counted_reloads(models):
    """The number of calls to ``models.reload`` so far, a list grown by one per call (a
    call has joined or queued its load when counted: no await comes between)."""
    calls, reload = [], models.reload

    async def counted(name):
        calls.append(name)
        return await reload(name)

    models.reload = counted
    return calls


def test_reloads_asked_during_a_load_merge_into_one_more(monkeypatch, tmp_path):
    """49 reloads asked while one loads: one more load, after it, whose outcome all 49
    get (and its refusal alike); a caller that stops waiting does not stop its load."""
    import seq2seq_kit.translator
    from seq2seq_kit.errors import CheckpointError
    from seq2seq_kit.serving.errors import RequestError
    from seq2seq_kit.serving.models import Models

    class Loaded:  # what a reload reads of a translator
        backend, quantization = "numpy", None

        def __init__(self, sha):
            self.weights_sha256 = sha

        def saved_phrase_table(self):  # read as the model loads: none here
            return None

    failing = set()

    def make(number, *args, **kwargs):
        if number in failing:
            raise CheckpointError(f"load {number} damaged")
        return Loaded(f"load {number}")

    loads = _HeldLoads(make)
    monkeypatch.setattr(seq2seq_kit.translator, "load", loads)
    models = Models({"m": Loaded("start")}, {"m": tmp_path})
    reported = []
    models.report = lambda name, old, outcome: reported.append(
        (name, old.weights_sha256, getattr(outcome, "weights_sha256", None) or outcome.status)
    )

    async def reloads():
        first = asyncio.create_task(models.reload("m"))
        await loads.entering()
        later = [asyncio.create_task(models.reload("m")) for _ in range(49)]
        await asyncio.sleep(0.05)
        assert len(loads.calls) == 1  # the 49 wait for the load under way
        loads.release.set()
        done = await first, await asyncio.gather(*later)
        # a refused load: every caller that joined it gets its refusal
        failing.add(3)
        refused = await asyncio.gather(
            *(models.reload("m") for _ in range(5)), return_exceptions=True
        )
        # a caller gone (a client that hung up) leaves the load to the others
        gone, stays = (asyncio.create_task(models.reload("m")) for _ in range(2))
        await asyncio.sleep(0)  # both asked, one load
        gone.cancel()
        stayed = await stays
        assert gone.cancelled()
        return done, refused, stayed

    (first, later), refused, stays = asyncio.run(reloads())
    assert len(loads.calls) == 4
    pair = lambda old_new: tuple(s.weights_sha256 for s in old_new)  # noqa: E731
    assert pair(first) == ("start", "load 1")
    assert {pair(old_new) for old_new in later} == {("load 1", "load 2")}
    assert all(isinstance(e, RequestError) and e.status == 409 for e in refused)
    assert "load 3 damaged" in refused[0].message and "keeps serving" in refused[0].message
    assert pair(stays) == ("load 2", "load 4")
    # each load reported once, however many reloads it served
    assert reported == [
        ("m", "start", "load 1"),
        ("m", "load 1", "load 2"),
        ("m", "load 2", 409),
        ("m", "load 2", "load 4"),
    ]
    assert models["m"].weights_sha256 == models.translators["m"].weights_sha256 == "load 4"


def test_reload_requests_during_a_load_share_one_more(served_dir, monkeypatch):
    """``POST .../reload`` twice while a reload loads: one more load, both answered by it."""
    import seq2seq_kit.translator

    real_load = seq2seq_kit.translator.load
    loads = _HeldLoads(lambda number, *args, **kwargs: real_load(*args, **kwargs))
    monkeypatch.setattr(seq2seq_kit.translator, "load", loads)
    client, _ = _client(served_dir, allow_reload=True)
    asked = _counted_reloads(client.app.state.models)
    replies = {}

    def send(name):
        replies[name] = client.post(RELOAD, headers=JSON)

    with client:
        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert loads.entered.wait(30)
        later = [threading.Thread(target=send, args=(name,)) for name in ("second", "third")]
        for thread in later:
            thread.start()
        _until(lambda: len(asked) == 3)
        loads.release.set()
        for thread in (first, *later):
            thread.join()
    assert len(loads.calls) == 2
    bodies = {name: reply.json() for name, reply in replies.items()}
    assert all(reply.status_code == 200 for reply in replies.values()), bodies
    assert bodies["second"] == bodies["third"]
    assert bodies["second"]["previous"]["loaded_at"] == bodies["first"]["loaded_at"]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_burst_of_sighups_loads_each_model_at_most_twice(retrained, monkeypatch, capsys):
    """50 SIGHUPs, 49 of them while the first reload loads: one more load, not 49."""
    import seq2seq_kit.translator

    real_load = seq2seq_kit.translator.load
    loads = _HeldLoads(lambda number, *args, **kwargs: real_load(*args, **kwargs))
    monkeypatch.setattr(seq2seq_kit.translator, "load", loads)
    app = create_app(
        {"default": real_load(retrained)}, sources={"default": retrained}, reload_on_sighup=True
    )
    asked = _counted_reloads(app.state.models)

    async def burst():
        async with app.router.lifespan_context(app):  # the handler of SIGHUP, as served
            os.kill(os.getpid(), signal.SIGHUP)
            await loads.entering()
            for _ in range(49):
                os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.sleep(0)
            while len(asked) < 50:  # every signal handled
                await asyncio.sleep(0.01)
            loads.release.set()
            counted = -1
            while counted != len(loads.calls):  # until no load follows
                counted = len(loads.calls)
                await asyncio.sleep(0.5)

    asyncio.run(burst())
    assert len(loads.calls) == 2
    out = capsys.readouterr().out
    assert out.count("SIGHUP: reloading default") == 50
    assert out.count("reloaded model 'default'") == 2 and "(unchanged)" in out


def test_reload_during_32_concurrent_requests_loses_none_and_sighup_reloads(
    served_dir, trained, retrained, tmp_path
):
    old_texts = seq2seq_kit.load(trained).translate(list("123456789"))
    new_texts = seq2seq_kit.load(retrained).translate(list("123456789"))
    assert old_texts != new_texts
    server = Server(["--model", str(served_dir), "--allow-reload"], tmp_path / "server.log")
    replies, reloaded, stop = [], threading.Event(), threading.Event()

    def client(index):
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not stop.is_set():
                after = reloaded.is_set()
                text = str(index % 9 + 1)
                try:
                    reply = http.post("/v1/translate", json={"texts": [text]})
                except httpx.HTTPError as exc:
                    reply = exc
                replies.append((after, text, reply))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        _until(lambda: len(replies) >= 64)  # every client under way
        seq2seq_kit.load(retrained).save(served_dir)
        reload = httpx.post(f"{server.url}{RELOAD}", headers=JSON, timeout=60)
        reloaded.set()
        _until(lambda: sum(after for after, *_ in replies) >= 64)
        stop.set()
        for t in threads:
            t.join()
        assert reload.status_code == 200, reload.text
        failed = [(text, r) for _, text, r in replies if getattr(r, "status_code", 0) != 200]
        assert not failed, failed[:3]
        before = [r for r in replies if not r[0]]
        after = [r for r in replies if r[0]]
        assert len(before) >= 32 and len(after) >= 32, (len(before), len(after))
        translated = {
            "old": dict(zip("123456789", old_texts, strict=True)),
            "new": dict(zip("123456789", new_texts, strict=True)),
        }
        for was_after, text, reply in replies:
            got = _first(reply)[0]
            # in flight at the reload: either model; sent after its answer: the new one
            assert got == translated["new"][text] or (
                not was_after and got == translated["old"][text]
            ), (was_after, text, got)
        assert server.wait_for(r"reloaded model 'default' from ")

        # SIGHUP: the trained model saved back, reloaded; then a damaged one refused
        seq2seq_kit.load(trained).save(served_dir)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(rf"weights SHA-256 {_sha(trained)}, was {_sha(retrained)}")
        [model] = httpx.get(f"{server.url}/v1/models").json()["models"]
        assert model["weights_sha256"] == _sha(trained)
        assert _first(httpx.post(f"{server.url}/v1/translate", json={"texts": ["3"]})) == ["three"]
        (served_dir / "weights.safetensors").write_bytes(b"damaged")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "error: reloading model 'default'" not in server.stderr():
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.05)
        assert "keeps serving" in server.stderr()
        assert _first(httpx.post(f"{server.url}/v1/translate", json={"texts": ["3"]})) == ["three"]
    finally:
        stop.set()
        assert server.stop() == 0, server.stderr()
    assert "Traceback" not in server.stderr()


def test_a_reload_keeps_the_quantization_scheme(served_dir, retrained):
    """A model served quantized (``serve --quantization``) is reloaded in the same scheme,
    and ``GET /v1/models`` names it."""
    from seq2seq_kit.errors import BackendError

    pytest.importorskip("onnxruntime")
    try:
        translator = seq2seq_kit.load(served_dir, backend="onnx", quantization="int8")
    except BackendError as exc:
        pytest.skip(f"the onnx backend does not run int8 here: {exc}")
    settings = ServeConfig(allow_reload=True)
    app = create_app({"default": translator}, settings, sources={"default": served_dir})
    with TestClient(app) as client:
        [before] = client.get("/v1/models").json()["models"]
        assert (before["backend"], before["quantization"]) == ("onnx", "int8")
        seq2seq_kit.load(retrained).save(served_dir)
        assert client.post(RELOAD, headers=JSON).status_code == 200
        [after] = client.get("/v1/models").json()["models"]
        assert (after["backend"], after["quantization"]) == ("onnx", "int8")
        assert after["weights_sha256"] == _sha(retrained)


def test_serve_refuses_a_scheme_its_backend_does_not_run(trained, capsys):
    from seq2seq_kit.cli import main

    args = ["serve", "--model", str(trained), "--backend", "numpy", "--quantization", "int8"]
    assert main(args) == 2
    assert "backend 'numpy' does not run models quantized to int8" in capsys.readouterr().err


def test_a_reload_out_of_memory_is_refused_and_the_old_model_kept(served_dir, monkeypatch):
    """A load that runs out of memory is a reason a directory does not load (409), not a
    server fault (500): the model keeps serving."""
    import seq2seq_kit.translator as translator_module

    client, _ = _client(served_dir, allow_reload=True)
    with client:

        def no_memory(*args, **kwargs):
            raise MemoryError()

        monkeypatch.setattr(translator_module, "load", no_memory)
        reply = client.post(RELOAD, headers=JSON)
        assert reply.status_code == 409, reply.text
        assert "out of memory (MemoryError" in reply.json()["error"]["message"]
        assert _first(client.post("/v1/translate", json={"texts": ["3"]})) == ["three"]
