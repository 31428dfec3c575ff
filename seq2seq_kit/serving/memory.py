"""A decoding call that runs out of memory, answered in the terms of the requests it held.

The server decodes the requests of a batch in one call. When that call fails to allocate,
in any backend (:func:`seq2seq_kit.errors.allocation_failure` recognises ``MemoryError``,
PyTorch's ``OutOfMemoryError`` and CPU allocator errors, TensorFlow's
``ResourceExhaustedError`` and the like by class name and message, importing no
framework), :func:`refuse_out_of_memory` raises a 413 :class:`RequestError` naming the
cause and the request's sizes to lower, and the batcher decodes the batch again in halves
(:mod:`.batcher`), so that only a request that runs out of memory alone is refused. The
model stays loaded and serves the next request.

The memory of the failed call must be free before it is tried again: the error's traceback
holds the call's frames and, in their variables, its tensors, for as long as the error
lives (and an error caught inside the call's own frames makes a reference cycle, which only
the garbage collector frees). So the frames are cleared and the garbage collected before
the 413 is raised, and the 413 holds none of them.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..errors import allocation_failure
from .errors import RequestError

if TYPE_CHECKING:
    from .requests import TranslateRequest

Result = TypeVar("Result")

#: The status of a request that runs out of memory alone: like a request over
#: ``serve.max_texts`` (413 too), it is larger than this server can decode, and sending it
#: again unchanged would fail again; a 503 would tell clients and load balancers to retry
#: it as it is and take the server for down, while it serves every other request.
STATUS = 413


def refuse_out_of_memory(
    decode: Callable[[list[TranslateRequest]], Result], requests: list[TranslateRequest]
) -> Result:
    """``decode(requests)``; a failed allocation in it becomes a :class:`RequestError`
    (status :data:`STATUS`, field None) naming the cause and what to lower, once the failed
    call's memory is released. Runs in a model's worker thread.

    Raises:
        RequestError: ``decode`` ran out of memory (the message words it for one request:
            the batcher tries a batch of several again in halves).
        Exception: any other error of ``decode``, unchanged.
    """
    try:
        return decode(requests)
    except Exception as exc:
        cause = allocation_failure(exc)
        if cause is None:
            raise
        _release(exc)
    # outside the except clause: the error and its traceback are gone, and the one raised
    # here has no context holding them
    gc.collect()
    raise RequestError(STATUS, out_of_memory_message(requests, cause))


def _release(exc: BaseException) -> None:
    """Clear the variables of the frames in the tracebacks of ``exc`` and of the errors it
    was raised from or while handling (those frames hold the failed call's arrays)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def out_of_memory_message(requests: Sequence[TranslateRequest], cause: str) -> str:
    """What a client is told when ``requests`` (one, after the batcher's splits) ran out of
    memory: the ``cause`` (the framework's error, e.g. ``RuntimeError: DefaultCPUAllocator:
    can't allocate memory: you tried to allocate 4294967296 bytes``) and the request's
    values of the sizes that set how much decoding allocates: texts, their source tokens,
    ``max_length``, the beam (``beam``, ``n_best``) or ``num_samples``, ``attention``."""
    texts = sum(len(r.texts) for r in requests)
    tokens = max((len(row or ()) for r in requests for row in r.source_ids), default=0)
    search = requests[0].search
    sizes = [f"the texts per request ({texts})", f"their length (up to {tokens} source tokens)"]
    sizes.append(f"max_length ({search.max_length})")
    if search.sampling is not None:
        sizes.append(f"num_samples ({search.sampling.num_samples})")
    else:
        if search.beam > 1:
            sizes.append(f"beam ({search.beam})")
        if search.n_best > 1:
            sizes.append(f"n_best ({search.n_best})")
    lower = ", ".join(sizes[:-1]) + f" or {sizes[-1]}"
    attention = "; or leave attention false" if requests[0].attention else ""
    return (
        f"out of memory decoding this request ({cause}); the server keeps serving other "
        f"requests: lower {lower}{attention}"
    )
