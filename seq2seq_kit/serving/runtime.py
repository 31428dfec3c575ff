"""The server's process: a listening socket, uvicorn running the app with the hardened
protocol (:mod:`.protocol`), a graceful stop on SIGTERM or SIGINT, and a reload of every
model from its directory on SIGHUP (:mod:`.models`)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .app import create_app
from .protocol import connection_budget, protocol_class

if TYPE_CHECKING:
    from ..api import Translator
    from ..config import ServeConfig


def run(
    models: dict[str, Translator],
    settings: ServeConfig,
    sources: Mapping[str, str | os.PathLike[str]] | None = None,
) -> int:
    """Serve ``models`` (name -> loaded model) as ``settings`` say until SIGTERM or SIGINT
    stops the server gracefully; prints the address when listening and ``stopped`` at the
    end. SIGHUP reloads each model from its directory in ``sources`` (name -> the
    directory it was loaded from), and so does ``POST /v1/models/NAME/reload`` with
    ``settings.allow_reload``. Returns the exit status, 0.

    Raises:
        ConfigError: the address cannot be listened on.
    """
    import uvicorn

    app = create_app(models, settings, sources=sources, reload_on_sighup=True)
    sock = listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    listed = ", ".join(f"{n} ({t.architecture}, {t.backend})" for n, t in models.items())
    print(f"serving {listed} on http://{shown}:{port} (pid {os.getpid()})", flush=True)
    max_connections, file_limit = connection_budget(settings.max_connections)
    if max_connections < settings.max_connections:
        print(
            f"note: at most {max_connections} open connections, not serve.max_connections = "
            f"{settings.max_connections}: this process may open {file_limit} files (ulimit -n)",
            file=sys.stderr,
            flush=True,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol_class(
                settings.header_timeout_s,
                settings.body_timeout_s,
                max_connections,
                settings.max_header_bytes,
            ),
            # no WebSocket routes: an upgrade would take its connection out of the count
            ws="none",
            # uvicorn annotates these int; it passes them to call_later and timeouts, which
            # take seconds as floats
            timeout_keep_alive=settings.keep_alive_timeout_s,
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again once its
    # own handlers are gone: a stop asked for is a normal end (exit 0), not an interruption
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run(sockets=[sock])
    sock.close()
    print("stopped", flush=True)
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port the system picks).

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
        # and without it a response's header and body writes wait ~40 ms (Nagle's
        # algorithm against the client's delayed ACK)
        sock = socket.socket(family, kind, proto)
    except OSError as exc:  # socket.gaierror too: a host name that does not resolve
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
