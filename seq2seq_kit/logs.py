"""Training log lines: the ``seq2seq_kit`` logger, and a stdout handler for runs whose
application set up no logging of its own (the CLI, a script, a notebook)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER_NAME = "seq2seq_kit"


class _ProgressSafeHandler(logging.Handler):
    """Writes each record as one line to the current ``sys.stdout`` through ``tqdm.write``,
    which clears and redraws any progress bar around it, then flushes: a redirected stdout
    is block-buffered, and a log file must show each epoch as it ends."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            stream = sys.stdout
            if stream is None:  # pythonw: no console to write to
                return
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except BrokenPipeError:
            pass  # a reader such as head went away; training goes on and still saves
        except Exception:
            self.handleError(record)


@contextmanager
def stdout_logging(level: int = logging.INFO, prefix: str = "") -> Iterator[None]:
    """While the block runs, send ``seq2seq_kit`` records of ``level`` and above to stdout,
    one flushed line each starting with ``prefix``, unless the application configured
    logging (the root or the ``seq2seq_kit`` logger has a handler): then its configuration
    decides, as usual."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = _ProgressSafeHandler(level)
    handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
