"""Stopping on SIGINT or SIGTERM: a training run saves, then stops, instead of dying in
the middle of an update."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopSignals:
    """SIGINT and SIGTERM handlers for the time training runs (main thread only: Python
    takes handlers nowhere else; a signal the parent process ignores, as shells do for
    SIGINT in background jobs, stays ignored). The first signal asks the loop to stop after
    the current update; a second SIGINT raises ``KeyboardInterrupt`` at once, for an update that
    hangs.

    Attributes:
        received: the number of the first signal received, or None.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM"):
                number = getattr(signal, name, None)
                if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self.handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, previous in self._previous.items():
            # None: a handler not set from Python, which Python cannot reinstall
            signal.signal(number, signal.SIG_DFL if previous is None else previous)

    def handle(self, number: int, frame: FrameType | None = None) -> None:
        """The handler of both signals: keeps the first; raises ``KeyboardInterrupt`` on a
        SIGINT after it."""
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = number
