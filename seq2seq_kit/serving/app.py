"""The ASGI application of ``seq2seq-kit serve`` (Starlette).

Routes: ``GET /`` (the web page), ``GET /healthz``, ``GET /v1/models``,
``GET /v1/stats``, ``POST /v1/translate``, ``POST /v1/models/NAME/reload`` (with
``serve.allow_reload``). Every error is JSON ``{"error": {"field", "message"}}`` with its
status (see ``docs/serving.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..config import ServeConfig
from ..errors import DataError
from .batcher import Batcher
from .decode import describe_model, translate_requests
from .errors import RequestError
from .memory import refuse_out_of_memory
from .models import Models, Served
from .requests import Resolved, TranslateRequest, parse_body, prepare

if TYPE_CHECKING:
    from ..api import Translator

log = logging.getLogger(__name__)


def create_app(
    models: Mapping[str, Translator],
    settings: ServeConfig | None = None,
    *,
    sources: Mapping[str, str | os.PathLike[str]] | None = None,
    reload_on_sighup: bool = False,
) -> Starlette:
    """An application serving ``models`` (name -> loaded :class:`Translator`; a request
    without ``"model"`` gets the first) within ``settings``' limits.

    ``sources`` gives the directory each model was loaded from, which a reload loads again
    (:mod:`.models`): ``POST /v1/models/NAME/reload`` with ``settings.allow_reload``, and
    with ``reload_on_sighup`` the signal SIGHUP, which reloads every model with a source
    (it needs the main thread's event loop: the server's, not a test client's).

    The batchers (one per model, see :mod:`.batcher`) start and stop with the application's
    lifespan: run it under a server that runs the lifespan (uvicorn does), or, in tests,
    use ``with TestClient(app)``. They are ``app.state.batchers`` (name -> Batcher); the
    models are ``app.state.models`` (:class:`Models`).

    Each model's phrase table (``[decode] replace_unk_table``) is read here, before the
    server answers (:meth:`Translator.saved_phrase_table`), so that no request reads a
    file.

    Raises:
        ValueError: no models, or a source for a name that is not a model's.
        DataError: a model's phrase table cannot be read or breaks the format, naming the
            model, the file and the line: the server does not start.
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    unknown = sorted(set(sources or {}) - set(models))
    if unknown:
        raise ValueError(f"sources for models that are not served: {unknown}")
    for name, translator in models.items():
        try:
            translator.saved_phrase_table()
        except DataError as exc:
            raise DataError(
                f"model {name!r} cannot be served: its phrase table "
                f"(decode.replace_unk_table): {exc}"
            ) from None
    api = _Api(Models(models, sources), settings or ServeConfig(), reload_on_sighup)
    app = Starlette(
        routes=[
            Route("/", api.index, methods=["GET"]),
            Route("/healthz", api.healthz, methods=["GET"]),
            Route("/v1/models", api.list_models, methods=["GET"]),
            Route("/v1/models/{name}/reload", api.reload, methods=["POST"]),
            Route("/v1/stats", api.stats, methods=["GET"]),
            Route("/v1/translate", api.translate, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=api.lifespan,
    )
    # /v1/translate/ is not /v1/translate: no redirect built from the client's Host header
    app.router.redirect_slashes = False
    app.state.batchers = api.batchers
    app.state.models = api.models
    return app


class _Api:
    """The endpoints, over the models, their batchers and what is worked out once: the web
    page, the model listing and the decoding options already resolved (both worked out
    again when a model is reloaded)."""

    def __init__(self, models: Models, settings: ServeConfig, reload_on_sighup: bool):
        self.models, self.settings = models, settings
        models.report = self._reported
        self.reload_on_sighup = reload_on_sighup
        self.default_model = models.names()[0]
        # one batcher per name, whichever model serves it: a request carries its model
        # (reloads do not mix models in a batch: the key holds it)
        self.batchers = {
            name: Batcher(
                _decode,
                key=lambda request: (request.translator, request.options),
                window_s=settings.batch_window_ms / 1000,
                max_batch=settings.max_batch,
                max_queue=settings.max_queue,
                name=name,
            )
            for name in models.names()
        }
        self.resolved: dict[tuple[Any, ...], Resolved] = {}  # see prepare
        package = resources.files(__package__)
        self.page = package.joinpath("static/index.html").read_text(encoding="utf-8")
        self.listing = self._listing()

    def _listing(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "models": [
                {
                    **describe_model(name, served.translator, settings.max_text_chars),
                    **served.describe(),
                }
                for name, served in self.models.served.items()
            ],
            "limits": {
                key: getattr(settings, key)
                for key in (
                    "max_texts",
                    "max_text_chars",
                    "max_beam",
                    "max_n_best",
                    "max_num_samples",
                    "max_max_length",
                    "max_constraints",
                )
            },
        }

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for batcher in self.batchers.values():
            batcher.start()
        hangup = getattr(signal, "SIGHUP", None) if self.reload_on_sighup else None
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
        if hangup is not None:

            def on_hangup() -> None:
                task = loop.create_task(self.reload_all("SIGHUP"))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(hangup, on_hangup)
        try:
            yield
        finally:
            if hangup is not None:
                loop.remove_signal_handler(hangup)
            for batcher in self.batchers.values():
                await batcher.close()

    async def reload_all(self, reason: str) -> None:
        """Reload every model loaded from a directory, one after the other (one extra
        model in memory at a time); each load is reported by :meth:`_reported`. A model
        whose reload another signal or request has queued already joins it
        (:meth:`Models.reload`), so signals in a burst load each model at most twice."""
        names = self.models.reloadable()
        print(f"{reason}: reloading {', '.join(names) or 'no model'}", flush=True)
        for name in names:
            # a refusal is reported by _reported, and the old model keeps serving
            with contextlib.suppress(RequestError):
                await self.models.reload(name)

    def _reported(self, name: str, old: Served, outcome: Served | RequestError) -> None:
        """A load of a reload done (:attr:`Models.report`): the listing and the resolved
        options worked out again, and the load reported on standard output (done) or
        error (refused), once however many reloads it served."""
        if isinstance(outcome, RequestError):
            print(f"error: reloading model {name!r}: {outcome.message}", file=sys.stderr)
            return
        # the new model's saved [decode] settings are the defaults of its requests
        self.resolved.clear()
        self.listing = self._listing()
        changed = "" if old.weights_sha256 != outcome.weights_sha256 else " (unchanged)"
        print(
            f"reloaded model {name!r} from {outcome.source}: weights SHA-256 "
            f"{outcome.weights_sha256}{changed}, was {old.weights_sha256}",
            flush=True,
        )

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(self, request: Request) -> Response:
        return JSONResponse(self.listing)

    async def reload(self, request: Request) -> Response:
        settings = self.settings
        try:
            if not settings.allow_reload:
                raise RequestError(
                    403,
                    "reloading over HTTP is off on this server: start it with --allow-reload "
                    "(serve.allow_reload = true), or send its process SIGHUP",
                )
            _check_media_type(request)
            body = await _read_body(request, settings.max_body_bytes)
            if body.strip() not in (b"", b"{}"):
                raise RequestError(422, "a reload takes no options: send no body, or {}")
            old, new = await self.models.reload(request.path_params["name"])
        except RequestError as exc:
            return _error(exc)
        return JSONResponse(
            {
                "model": request.path_params["name"],
                **new.describe(),
                "previous": old.describe(),
            }
        )

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"models": {name: b.stats() for name, b in self.batchers.items()}})

    async def translate(self, request: Request) -> Response:
        settings = self.settings
        try:
            _check_media_type(request)
            body = parse_body(await _read_body(request, settings.max_body_bytes))
            job = prepare(
                body, self.models.translators, settings, self.default_model, self.resolved
            )
            translations = await self.batchers[job.model].submit(job, len(job.texts))
        except RequestError as exc:
            return _error(exc)
        except ClientDisconnect:
            # the client left mid-body, or the server gave up waiting for the body and
            # answered 408 itself: nobody reads this reply, and no fault is the server's
            return Response(status_code=400)
        except asyncio.CancelledError:
            # the server is stopping and this request outlived serve.shutdown_timeout_s:
            # uvicorn cancels its task, and then the client is told why (it would get a
            # plain-text 500); the task ends with this reply, so the cancellation stops here
            return _error(
                RequestError(
                    503,
                    "the server is stopping and could not finish this request within "
                    f"{settings.shutdown_timeout_s:g} s (serve.shutdown_timeout_s); retry "
                    f"later or on another server",
                    headers={"Connection": "close"},
                )
            )
        return Response(
            b'{"model":%s,"translations":%s}' % (_json(job.model), translations),
            media_type="application/json",
        )


def _decode(requests: list[TranslateRequest]) -> list[bytes]:
    """:func:`_translate_rendered` in the model's worker thread, an out-of-memory a 413
    (:func:`refuse_out_of_memory`)."""
    return refuse_out_of_memory(_translate_rendered, requests)


def _translate_rendered(requests: list[TranslateRequest]) -> list[bytes]:
    """:func:`translate_requests` by the requests' model (one for all: the batcher's key
    holds it), each request's translations rendered as JSON here, in the model's worker
    thread: a large reply (attention) is not encoded on the event loop, which keeps
    answering ``GET /healthz`` meanwhile."""
    translator = requests[0].translator
    return [_json(translations) for translations in translate_requests(translator, requests)]


def _json(content: Any) -> bytes:
    """``content`` encoded as Starlette's ``JSONResponse`` encodes it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes, so that a huge body
    is neither read whole nor held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{declared} bytes", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_media_type(request: Request) -> None:
    """Refuse (415) a body not declared ``application/json``. Browsers send the other
    types a form can (``text/plain``, form-encoded) across origins without asking the
    server first; ``application/json`` needs a CORS preflight, which this server never
    grants, so a web page of another origin cannot make a visitor's browser post to it."""
    declared = request.headers.get("content-type")
    if declared is None:
        raise RequestError(415, "the body needs the header Content-Type: application/json")
    if declared.partition(";")[0].strip().lower() != "application/json":
        raise RequestError(
            415,
            f"the body is declared {declared[:60]!r}; send JSON with "
            f"Content-Type: application/json",
        )


def _too_large(size: str, limit: int) -> RequestError:
    return RequestError(
        413, f"the body has {size} but this server takes at most {limit} (serve.max_body_bytes)"
    )


def _error(exc: RequestError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Any) -> Response:
    """Starlette's own refusals (404 unknown path, 405 wrong method) in the API's shape."""
    if exc.status_code == 404:
        message = (
            f"no such endpoint: {request.url.path} (the API: GET /healthz, GET /v1/models, "
            f"GET /v1/stats, POST /v1/translate, POST /v1/models/NAME/reload)"
        )
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    else:
        message = str(exc.detail)
    return _error(RequestError(exc.status_code, message, headers=dict(exc.headers or {})))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(RequestError(500, f"internal error: {type(exc).__name__}: {exc}"))
