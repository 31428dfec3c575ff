"""The models a server holds, by name, and their reload from disk.

Each name maps to a :class:`Served`: the loaded model, the directory it was loaded from,
when, and the SHA-256 of its weights. :meth:`Models.reload` loads the directory again as
it is on disk now (a model retrained or saved to the same path: saves are atomic, see
:mod:`seq2seq_kit.checkpoint`), in a thread of its own while the old model goes on
decoding, checked as every load is (each file's SHA-256, the fields of ``model.json``,
finite weights), and only then puts it in the old one's place, in one assignment on the
event loop. A request keeps the model it was checked and encoded against
(:attr:`TranslateRequest.translator`) and is decoded by it, so requests accepted before
the swap finish on the old model and later ones get the new; the old model's memory is
freed once its last request is answered (until then both are held). A directory that
does not load (damaged, missing, not a model) is refused and the old model keeps
serving.

Reloads of one model run one at a time, and those asked for meanwhile are merged (a
"dirty" flag per model): a reload asked for while another of that model waits to start
joins it, one load whose outcome every caller gets; one asked for while a load runs waits
for it and then loads once more (the running load may have read the directory before the
save the caller wants served), and later calls join that one. However many SIGHUPs or
``POST /v1/models/NAME/reload`` arrive, at most one load of a model runs and one waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Seq2SeqError, allocation_failure
from .errors import RequestError

if TYPE_CHECKING:
    from ..api import Translator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """A model as the server holds it.

    Attributes:
        translator: the loaded model.
        source: the model directory it was loaded from; None: it was given loaded, and
            cannot be reloaded.
        loaded_at: when the server took it (seconds since the epoch, ``time.time()``).
    """

    translator: Translator
    source: Path | None
    loaded_at: float

    @property
    def weights_sha256(self) -> str | None:
        """The SHA-256 of its weights file (hex), as loaded; None when unknown."""
        return self.translator.weights_sha256

    def describe(self) -> dict[str, Any]:
        """``loaded_at`` (ISO 8601, UTC, to the millisecond) and ``weights_sha256``."""
        stamp = datetime.fromtimestamp(self.loaded_at, timezone.utc)
        return {
            "loaded_at": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "weights_sha256": self.weights_sha256,
        }


def load_served(
    path: str | os.PathLike[str], backend: str | None = None, quantization: str | None = None
) -> Translator:
    """The model directory ``path`` loaded (:func:`seq2seq_kit.translator.load`) with its
    phrase table read (:meth:`Translator.saved_phrase_table`), so that no request reads a
    file: a server loads its models with this, at start and at a reload (in a thread of
    its own, off the event loop).

    Raises:
        As :func:`~seq2seq_kit.translator.load`; DataError: a phrase table saved as a path
            (a model saved before model directories held their table) that cannot be read
            or breaks the format.
    """
    from ..translator import load

    translator = load(path, backend, quantization=quantization)
    translator.saved_phrase_table()
    return translator


class Models:
    """The served models by name (:class:`Served`), and their reload.

    Args:
        translators: name -> loaded model, in the order listed.
        sources: name -> the directory each was loaded from (a model without one cannot be
            reloaded).

    Attributes:
        translators: name -> the model serving requests now; a reload replaces its entry,
            so a reader of this dict gets the new model from then on.
        report: called once per load a reload runs, on the event loop, with the model's
            name, the model served before and the outcome: the new :class:`Served`, put in
            place just before, or the :class:`RequestError` that refused it (the old model
            kept); None: not reported.
    """

    def __init__(
        self,
        translators: Mapping[str, Translator],
        sources: Mapping[str, str | os.PathLike[str]] | None = None,
    ):
        now = time.time()
        sources = sources or {}
        self.served = {
            name: Served(t, Path(sources[name]) if name in sources else None, now)
            for name, t in translators.items()
        }
        self.translators = dict(translators)
        self.report: Callable[[str, Served, Served | RequestError], None] | None = None
        self._locks = {name: asyncio.Lock() for name in translators}
        # name -> the reload asked for and not started, which a new request joins
        self._waiting: dict[str, asyncio.Task[tuple[Served, Served]]] = {}
        self._tasks: set[asyncio.Task[tuple[Served, Served]]] = set()  # the loop holds weakly

    def __getitem__(self, name: str) -> Served:
        return self.served[name]

    def names(self) -> list[str]:
        return list(self.served)

    def reloadable(self) -> list[str]:
        """The names of the models loaded from a directory."""
        return [name for name, s in self.served.items() if s.source is not None]

    async def reload(self, name: str) -> tuple[Served, Served]:
        """Load model ``name``'s directory again, with the backend and quantization scheme
        running it now, and serve it in the old one's place. Returns ``(old, new)``.

        Merged with the other reloads of the model (see the module documentation): the
        load this call waits for starts after the call, but may serve other calls too,
        which then get the same ``(old, new)`` or the same error. A caller that stops
        waiting (cancelled) does not cancel the load.

        Raises:
            RequestError: 404 for an unknown name; 409 for a model given loaded (no
                directory), or a directory that does not load (damaged, missing, not a
                model, a backend that cannot run it, a phrase table missing, altered or
                broken: the loader's message, :func:`load_served`): the old model
                keeps serving; 500 for any other failure of the load, old model kept too.
        """
        if name not in self.served:
            have = ", ".join(repr(n) for n in self.served)
            raise RequestError(404, f"no model named {name!r}; this server has {have}")
        if self.served[name].source is None:
            raise RequestError(
                409, f"model {name!r} was given to the server loaded, not as a directory"
            )
        waiting = self._waiting.get(name)
        if waiting is None:
            waiting = asyncio.get_running_loop().create_task(self._reload_when_free(name))
            self._waiting[name] = waiting
            self._tasks.add(waiting)
            waiting.add_done_callback(lambda task: self._finished(name, task))
        return await asyncio.shield(waiting)

    def _finished(self, name: str, task: asyncio.Task[tuple[Served, Served]]) -> None:
        self._tasks.discard(task)
        if self._waiting.get(name) is task:  # cancelled before it started (the loop closing)
            del self._waiting[name]
        if not task.cancelled():
            task.exception()  # retrieved: its callers got it, or stopped waiting

    async def _reload_when_free(self, name: str) -> tuple[Served, Served]:
        """:meth:`_load` once no other load of ``name`` runs."""
        async with self._locks[name]:
            # this load reads the directory from now on: a reload asked for later may want
            # a save this load misses, so it waits for the next
            del self._waiting[name]
            return await self._load(name)

    async def _load(self, name: str) -> tuple[Served, Served]:
        """One load of ``name``'s directory, put in place and reported (:attr:`report`)."""
        old = self.served[name]
        try:
            new = await self._load_served(name, old)
        except RequestError as exc:
            if self.report is not None:
                self.report(name, old, exc)
            raise
        self.served[name] = new
        self.translators[name] = new.translator
        if self.report is not None:
            self.report(name, old, new)
        return old, new

    async def _load_served(self, name: str, old: Served) -> Served:
        """``old``'s directory loaded as it is now, with its backend and scheme.

        Raises:
            RequestError: 409 or 500, as :meth:`reload`.
        """
        keeping = (
            f"model {name!r} keeps serving the weights loaded at "
            f"{old.describe()['loaded_at']} (SHA-256 {old.weights_sha256})"
        )
        try:
            translator = await asyncio.to_thread(
                load_served,
                old.source,
                old.translator.backend,
                quantization=old.translator.quantization,
            )
        except Seq2SeqError as exc:
            raise RequestError(409, f"{old.source} was not reloaded: {exc}; {keeping}") from None
        except Exception as exc:
            why = allocation_failure(exc)
            if why is not None:  # the old model's memory stays held: a cause to report
                raise RequestError(
                    409, f"{old.source} was not reloaded: out of memory ({why}); {keeping}"
                ) from None
            log.error("reloading model %r from %s failed", name, old.source, exc_info=exc)
            raise RequestError(
                500,
                f"{old.source} was not reloaded: {type(exc).__name__}: {exc}; {keeping}",
            ) from None
        return Served(translator, old.source, time.time())
