"""The one error shape of the HTTP API: ``{"error": {"field": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request the server refuses or could not serve.

    Attributes:
        status: the HTTP status (400, 404, 413, 422, 500, 503...).
        field: the request field at fault, as a path (``"texts[2]"``, ``"beam"``), or None.
        message: a sentence naming what was wrong and where.
        headers: extra response headers (``Retry-After`` for 503).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message}}
