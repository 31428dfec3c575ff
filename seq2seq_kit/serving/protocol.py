"""The server's HTTP/1.1 connections: uvicorn's httptools protocol with the deadlines and
the limit it lacks against slow or hostile clients.

uvicorn times out idle keep-alive connections only: a client that sends half a request
head, or half a body, holds its connection (a file descriptor; for a body, the server's
stop too) for as long as it likes, and httptools keeps a head of any size whole in
memory. :func:`protocol_class` adds a deadline for a request's head
(``serve.header_timeout_s``) and one for its body (``serve.body_timeout_s``), a bound on
a head's size (``serve.max_header_bytes``), a bound on open connections
(``serve.max_connections``), a stop that answers requests still waiting for their body
at once, and JSON bodies for the errors uvicorn answers itself (an unparsable request).
"""

from __future__ import annotations

import asyncio
import http
import json
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import RequestError

#: File descriptors kept free beside the connections: the listening socket and the event
#: loop's are open already (counted), these are for a connection accepted over the limit
#: (it must be opened to be refused) and the files the process opens while serving.
FD_RESERVE = 32


def connection_budget(wanted: int) -> tuple[int, int | None]:
    """``wanted`` connections, lowered to what the process's open-file limit leaves once
    its open files and :data:`FD_RESERVE` are counted (at least 1), and that limit (None
    where it cannot be read: then ``wanted`` as given)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        open_now = len(os.listdir("/dev/fd"))
    except (ImportError, OSError):  # Windows; a system without /dev/fd
        return wanted, None
    if limit == resource.RLIM_INFINITY:
        return wanted, None
    return max(1, min(wanted, limit - open_now - FD_RESERVE)), limit


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response closing its connection, with the API's JSON error body."""
    body = json.dumps(RequestError(status, message).body(), separators=(",", ":")).encode("utf-8")
    phrase = http.HTTPStatus(status).phrase
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def protocol_class(
    header_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
    max_header_bytes: int = 1 << 16,
) -> type[HttpToolsProtocol]:
    """A subclass of uvicorn's ``HttpToolsProtocol`` with these limits, for
    ``uvicorn.Config(http=...)``.

    A connection waits for a request head (from its opening, or from the first byte after
    the last response) at most ``header_timeout_s`` seconds, then is answered 408 and
    closed (closed without an answer if it sent nothing); a body still arriving
    ``body_timeout_s`` seconds after its head is answered 408 and its connection closed; a
    connection opened while ``max_connections`` are open is answered 503 and closed at once;
    a head (request line and headers) over ``max_header_bytes`` bytes is answered 431 and
    its connection closed, once that many bytes of it have arrived (not when it ends).
    """

    # uvicorn makes each connection's protocol from the class alone: the limits ride on it
    limits = {
        "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s,
        "max_connections": max_connections,
        "max_header_bytes": max_header_bytes,
    }
    return type("GuardedProtocol", (_GuardedProtocol,), limits)


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_header_bytes: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One deadline at a time: "head" while a request head is awaited, "body" while
        # the body of a request being answered is.
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: str | None = None
        self._head_begun = False
        # This connection's requests not yet answered, oldest first: uvicorn tells only the
        # last one parsed (``cycle``) that its client has gone, not one started from the
        # pipeline before it
        self._unanswered: list[Any] = []
        # Bytes of the head in progress, counted as they arrive; _in_body: between a head's
        # end and its message's; _ended: a message ended in the bytes being parsed
        self._head_bytes = 0
        self._in_body = False
        self._ended = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # refused before reading: a flood of idle sockets must not use the descriptors
            # that new clients (a load balancer's /healthz) need
            self._answer(
                503,
                f"the server has {self.max_connections} open connections, its limit "
                f"(serve.max_connections); retry later",
                {"retry-after": "1"},
            )
            return
        self._arm("head", self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        # a request started from the pipeline would write its answer to the closed
        # transport (uvloop raises, uvicorn logs a traceback): it is told its client has
        # gone, as the last one is, and its answer is dropped
        self._disconnect_all()
        super().connection_lost(exc)

    def _disconnect_all(self) -> None:
        """Tell each request of this connection not yet answered that its client has gone:
        its ``receive`` returns ``http.disconnect`` and what it sends is dropped."""
        for cycle in self._unanswered:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._unanswered.clear()

    def data_received(self, data: bytes) -> None:
        # httptools keeps a header's bytes until it ends, whatever their number: a head is
        # fed no more bytes than its limit leaves, and refused once it reaches it unended
        limit = self.max_header_bytes
        while data and not self.transport.is_closing():
            in_head = not self._in_body
            size = limit - self._head_bytes if in_head else len(data)
            piece, data = data[:size], data[size:]
            self._ended = False
            self._feed(piece)
            if self._refused or self.transport.is_closing():
                return
            if self._head_begun and in_head and not self._ended:
                self._head_bytes += len(piece)
                if self._head_bytes >= limit:
                    self._refuse_head()
            # else a head begun after a message ended within these bytes: its part of them
            # is uncounted (at most one read, or the limit), on_headers_complete counts it

    def _feed(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # bytes between requests: the next head, or the rest of a body the answer did not
            # need; either must end within the head's deadline, or a drip never ends
            if self._waiting != "head":
                self._arm("head", self.header_timeout_s)
        elif cycle.more_body and self._waiting is None:
            self._arm("body", self.body_timeout_s)

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_begun = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        # the head at its fewest bytes (whitespace the parser drops is not counted, so no
        # head within the limit is refused): its bytes that followed another message's end
        # in one read were not counted as they arrived
        parsed = (
            len(self.parser.get_method())
            + len(self.url)
            + len("  HTTP/1.1\r\n")
            + sum(len(name) + len(value) + len(":\r\n") for name, value in self.headers)
            + len("\r\n")
        )
        if parsed > self.max_header_bytes:
            self._refuse_head()
            return
        self._disarm()
        self._head_begun = False
        self._head_bytes = 0
        self._in_body = True
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle not in self._unanswered:
            self._unanswered = [c for c in self._unanswered if not c.response_complete]
            self._unanswered.append(cycle)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_body = False
        self._ended = True
        if self._waiting == "body":
            self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._answer(400, "the request is not valid HTTP/1.1 (it could not be parsed)")

    def shutdown(self) -> None:
        # a request whose body is still on its way has not started: refused now, the stop
        # does not wait on a slow client (requests being decoded are still answered)
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_started:
            self._answer(503, "the server is stopping; retry later or on another server")
        else:
            super().shutdown()

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm()
        self._answer(
            431,
            f"the request's head (request line and headers) is over "
            f"{self.max_header_bytes} bytes (serve.max_header_bytes)",
        )

    def _arm(self, waiting: str, seconds: float) -> None:
        self._disarm()
        self._waiting = waiting
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._waiting = None, None

    def _expired(self) -> None:
        waiting = self._waiting
        self._deadline, self._waiting = None, None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if waiting == "head" and self._head_begun:
            self._answer(
                408,
                f"the request's head did not arrive within {self.header_timeout_s:g} s "
                f"(serve.header_timeout_s)",
            )
        elif waiting == "body" and cycle is not None and not cycle.response_started:
            self._answer(
                408,
                f"the request's body did not arrive within {self.body_timeout_s:g} s "
                f"(serve.body_timeout_s)",
            )
        else:  # nothing begun, or an answer already under way: nothing to say
            self.transport.close()

    def _answer(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` with a JSON error and close. A request being served is told its
        client has gone (its ``receive`` returns ``http.disconnect``; what it sends is
        dropped), so it ends quietly."""
        self._disconnect_all()
        self.transport.write(error_response(status, message, headers))
        self.transport.close()
