"""``[serve]``: the HTTP server's address, batching and the bounds on what a client may send."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..section import MAX_LENGTH, Section


class ServeConfig(Section):
    host: str = Field(
        "127.0.0.1",
        description="address to listen on (0.0.0.0: every interface; put a proxy before it)",
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0: any free one (printed)")
    batch_window_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long a batch waits at most for more requests (ms; 0: never)",
    )
    max_batch: int = Field(
        256,
        ge=1,
        le=65536,
        description="texts of several requests decoded together (at most; as decode.batch_size)",
    )
    max_queue: int = Field(
        1024,
        ge=1,
        le=1 << 24,
        description="texts accepted and not yet answered, per model, before 503",
    )
    max_texts: int = Field(64, ge=1, le=65536, description="texts per request (more: 413)")
    max_text_chars: int = Field(
        1000, ge=1, le=1 << 20, description="characters per text (more: 413)"
    )
    max_beam: int = Field(16, ge=1, le=1024, description="largest beam a request may ask for")
    max_n_best: int = Field(16, ge=1, le=1024, description="largest n_best a request may ask for")
    max_num_samples: int = Field(
        16, ge=1, le=1024, description="largest num_samples (sampling) a request may ask for"
    )
    max_constraints: int = Field(
        16,
        ge=0,
        le=1024,
        description="lexical constraints (target phrases, each of at most max_text_chars "
        "characters) a request may give per text; 0: none",
    )
    max_max_length: int = Field(
        512,
        ge=1,
        le=MAX_LENGTH,
        description="largest max_length a request may ask for (and the default's cap)",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1, le=1 << 30, description="request body size in bytes (more: 413)"
    )
    max_attention_weights: int = Field(
        1_000_000,
        ge=1,
        le=1 << 32,
        description="attention weights a reply may hold: texts x n_best x (max_length + 1) x "
        "source tokens, counted before decoding (more: 422)",
    )
    max_header_bytes: int = Field(
        1 << 16,
        ge=1 << 10,
        le=1 << 24,
        description="size of a request's head (request line and headers) in bytes (more: "
        "431, connection closed)",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds a request's headers may take to arrive, from the connection's "
        "opening or the request's first byte (more: 408, connection closed)",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds a request's body may take to arrive, from the end of its headers "
        "(more: 408, connection closed)",
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="seconds an idle keep-alive connection is kept open"
    )
    max_connections: int = Field(
        512,
        ge=1,
        le=1 << 20,
        description="open connections, idle ones included; more are refused (503) (lowered "
        "to what the process's open-file limit allows)",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="seconds a stop waits for requests in progress before it refuses them "
        "(503) and exits",
    )

    allow_reload: bool = Field(
        False,
        description="answer POST /v1/models/NAME/reload, which loads the model's directory "
        "again as it is on disk (off: 403; SIGHUP reloads every model either way)",
    )

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServeConfig:
        if self.max_queue < self.max_texts:
            raise ValueError(
                f"max_queue = {self.max_queue} is below max_texts = {self.max_texts}: a "
                f"request of max_texts texts could never be queued; raise max_queue"
            )
        return self
