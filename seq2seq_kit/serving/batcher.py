"""Micro-batching: requests for one model that arrive together are decoded together, in
one worker thread per model.

Decoding a batch of B texts costs far less than B decodings of one text (one ``step`` call
per output position serves every row), so a server answering many small requests gains by
waiting a few milliseconds for others to join the first (the scheme of TensorFlow
Serving's and Triton's dynamic batchers). When the worker is free, the batcher waits until
a round's target of texts is waiting or ``window_s`` has passed since the first waiting
request arrived or the worker became free, whichever is later; it takes the waiting
requests (up to ``max_batch`` texts), groups them by their decoding options and makes one
``decode`` call per group. A model is not thread-safe, so each model has one thread; the
event loop stays free for other endpoints while it decodes.

The target is ``max_batch`` texts, except after a round during which no request arrived:
the load is light, and the next round waits for no more texts than that round took. So a
lone client (whose next request needs the reply to this one) is decoded at once, instead
of after the window on every request, and a group of clients answered together is
decoded together as soon as all are back. Under heavy load the window counts from the
end of the last round, not from the first request's arrival: clients answered by one
round and those that arrived while it decoded then join one batch. Counted from the
arrival (which lies further back than the window once a round has decoded for longer),
the two groups would alternate in half-full batches forever (64 clients decoded 32 at a
time: 0.75 times the throughput, measured with ``benchmarks/bench_serve.py``). The first
round after start waits for ``max_batch`` texts, up to the window.

If a group's call raises, its requests are decoded again in two halves of about as many
texts each, and a half that fails again is split again, down to single requests: only a
request that fails alone is answered with the error, and a batch that ran out of memory
(:mod:`.memory`) is retried smaller. Splitting in halves, not one by one, keeps a large
batch that ran out of memory batched: halves that fit are decoded in one call each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import RequestError

log = logging.getLogger(__name__)

Item = TypeVar("Item")

#: Seconds a client is told to wait before retrying an overloaded server (Retry-After).
RETRY_AFTER_S = 1


@dataclass
class _Job(Generic[Item]):
    item: Item
    size: int  # texts
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


class Batcher(Generic[Item]):
    """A queue of requests for one model and the task that decodes them.

    Args:
        decode: runs in the worker thread: ``decode(items)`` returns one result per item,
            in order; every item of one call has the same ``key``.
        key: the decoding options of an item (items with equal keys may share a call).
        window_s: how long a round waits at most for its target of texts, from the first
            waiting request's arrival or the end of the last round, whichever is later
            (seconds; 0: never wait, decode whatever is waiting once the worker is free).
        max_batch: the most texts taken for one round (one request of more is taken alone).
        max_queue: the most texts accepted and not yet answered; past it, 503.
        name: the model's name, for messages and the thread's name.

    ``decode`` may raise :class:`RequestError` for its items: an item that fails alone is
    answered with it as it is (a 413 for a request that ran out of memory); any other error
    of an item alone is answered 500.

    Attributes:
        decode_calls: how many ``decode`` calls were made (one per group, and one per
            part of a group decoded again after a failure).
        decoded_texts: the texts of those calls, in all (``decoded_texts / decode_calls``
            is the mean batch size: how well requests were batched).
        failed_calls: how many of those calls raised (each of several items is followed
            by two calls on its halves).
    """

    def __init__(
        self,
        decode: Callable[[list[Item]], Sequence[Any]],
        key: Callable[[Item], Hashable],
        *,
        window_s: float,
        max_batch: int,
        max_queue: int,
        name: str = "default",
    ):
        self._decode, self._key = decode, key
        self.window_s, self.max_batch, self.max_queue = window_s, max_batch, max_queue
        self.name = name
        self.decode_calls = self.decoded_texts = self.failed_calls = 0
        self._jobs: deque[_Job[Item]] = deque()
        self._queued = 0  # texts in self._jobs
        self._pending = 0  # texts accepted and not yet answered
        self._closing = False
        self._target = max_batch  # texts the next round waits for (see the module's doc)
        self._free_since = 0.0  # time.monotonic() at the end of the last round
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the decoding task in the running event loop, and the worker thread."""
        self._wake = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"decode-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Accept no more requests (503), finish those queued, stop the worker thread."""
        self._closing = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = None

    async def submit(self, item: Item, size: int) -> Any:
        """Queue ``item`` (``size`` texts) and wait for its result.

        Raises:
            RequestError: 503 when the server is shutting down or ``max_queue`` texts
                would be exceeded; 500 when decoding the item alone failed.
        """
        if self._closing or self._wake is None:
            raise RequestError(
                503, "the server is shutting down", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        if self._pending + size > self.max_queue:
            raise RequestError(
                503,
                f"overloaded: {self._pending} texts are waiting for model {self.name!r} and "
                f"this request's {size} would pass serve.max_queue = {self.max_queue}; retry "
                f"after {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(item, size, future))
        self._queued += size
        self._pending += size
        # the round waiting for company wakes only once it has enough (or at its deadline):
        # waking it on every arrival costs the event loop a turn per request
        if len(self._jobs) == 1 or self._queued >= self._target:
            self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            while not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            # wait for the target, at most window_s from the first request's arrival or the
            # end of the last round (see the module's doc)
            deadline = max(self._jobs[0].arrived, self._free_since) + self.window_s
            while self._queued < self._target and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            taken = self._take()
            await self._decode_round(taken)
            self._free_since = time.monotonic()
            # nothing arrived while decoding: the load is light (a lone client's next
            # request needs this reply), so the next round waits for no more than this one
            # took; else it waits for a full batch
            light = not self._jobs
            self._target = sum(job.size for job in taken) if light else self.max_batch
            self._target = max(1, min(self.max_batch, self._target))

    def _take(self) -> list[_Job[Item]]:
        """The first job, and those after it while they fit in ``max_batch`` texts."""
        taken: list[_Job[Item]] = []
        texts = 0
        while self._jobs and (not taken or texts + self._jobs[0].size <= self.max_batch):
            job = self._jobs.popleft()
            self._queued -= job.size
            if job.future.done():  # the client went away
                self._pending -= job.size
                continue
            taken.append(job)
            texts += job.size
        return taken

    async def _decode_round(self, jobs: list[_Job[Item]]) -> None:
        groups: dict[Hashable, list[_Job[Item]]] = {}
        for job in jobs:
            groups.setdefault(self._key(job.item), []).append(job)
        for group in groups.values():
            await self._decode_group(group)

    async def _decode_group(self, group: list[_Job[Item]]) -> None:
        """Decode ``group`` in one call; if it raises, decode its halves apart, and so on
        down to single requests (see the module's doc)."""
        try:
            results = await self._call(group)
        except Exception as exc:
            self.failed_calls += 1
            if len(group) == 1:
                self._answer(group[0], error=exc)
                return
            log.warning(
                "decoding %d requests (%d texts) of model %r together failed (%s): decoding "
                "them again in two halves",
                len(group),
                sum(job.size for job in group),
                self.name,
                _first_line(exc),
            )
        else:
            for job, result in zip(group, results, strict=True):
                self._answer(job, result)
            return
        # here, past the except clause, the error and the failed call's frames are gone:
        # a call that ran out of memory holds none of it while its halves decode
        half = _halve(group)
        await self._decode_group(group[:half])
        await self._decode_group(group[half:])

    def stats(self) -> dict[str, Any]:
        """Counters since start: ``decode_calls``, ``decoded_texts``, ``mean_batch_texts``
        (None before the first call), ``failed_calls`` and ``pending_texts`` (accepted, not
        yet answered)."""
        calls, texts = self.decode_calls, self.decoded_texts
        return {
            "decode_calls": calls,
            "decoded_texts": texts,
            "mean_batch_texts": texts / calls if calls else None,
            "failed_calls": self.failed_calls,
            "pending_texts": self._pending,
        }

    async def _call(self, jobs: list[_Job[Item]]) -> Sequence[Any]:
        self.decode_calls += 1
        self.decoded_texts += sum(job.size for job in jobs)
        items = [job.item for job in jobs]
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._decode, items)
        if len(results) != len(items):
            raise RuntimeError(f"decode returned {len(results)} results for {len(items)}")
        return results

    def _answer(self, job: _Job[Item], result: Any = None, error: Exception | None = None) -> None:
        self._pending -= job.size
        if job.future.done():  # cancelled: the client went away
            return
        if error is None:
            job.future.set_result(result)
            return
        if isinstance(error, RequestError):  # decode's own answer (a 413: out of memory)
            log.warning("a request to model %r refused: %s", self.name, error.message)
            job.future.set_exception(error)
            return
        log.error("decoding failed for model %r", self.name, exc_info=error)
        job.future.set_exception(
            RequestError(500, f"decoding failed: {type(error).__name__}: {error}")
        )


def _halve(jobs: Sequence[_Job[Any]]) -> int:
    """Where to cut ``jobs`` (at least 2) into two parts of about as many texts each: an
    index from 1 to ``len(jobs) - 1``."""
    total, texts = sum(job.size for job in jobs), 0
    for index, job in enumerate(jobs[:-1], start=1):
        texts += job.size
        if 2 * texts >= total:
            return index
    return len(jobs) - 1


def _first_line(exc: BaseException) -> str:
    """``exc`` as its class name and the first line of its message, for a log line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
