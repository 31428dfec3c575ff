"""Where the event files of a training run go, and which run a process continues.

The log directory is ``DIR.tensorboard`` beside the model directory ``DIR`` (which is
replaced whole at every save, so nothing is kept inside it), or without a model directory
``$SEQ2SEQ_KIT_TENSORBOARD`` if set, else none. In it each run has a directory of its own,
``run-1``, ``run-2``..., which TensorBoard shows as runs of their own.

A process's first record at step ``S`` decides: when every step logged in the latest run
directory is before ``S``, the process continues that run (a resumed run: its own event
file in the same directory, and TensorBoard draws one curve through both); otherwise it
starts the next run directory (a new run at the same path, whose steps start over, or a run
resumed from a checkpoint older than steps already logged, which would draw over them).
Nothing is deleted. Within a process, a record whose step is before the last one written
also starts a new run (a second training in the same process, after one that raised).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq_kit.errors import ConfigError

from .events import last_step, summary_writer

#: Without a model directory, the log directory (unset or empty: no log).
ENV = "SEQ2SEQ_KIT_TENSORBOARD"

_RUN = re.compile(r"run-([1-9][0-9]*)")


def log_root(out_dir: str | None) -> Path | None:
    """The log directory of a run writing the model directory ``out_dir`` (None: none)."""
    if out_dir is not None:
        return Path(os.path.normpath(out_dir) + ".tensorboard")
    value = os.environ.get(ENV)
    return Path(value) if value else None


def run_directories(root: Path) -> list[tuple[int, Path]]:
    """The ``run-N`` directories of ``root`` as (N, path), in the order of N."""
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        match = _RUN.fullmatch(path.name)
        if match and path.is_dir():
            runs.append((int(match.group(1)), path))
    return sorted(runs)


def choose_run(root: Path, step: int) -> tuple[Path, int | None]:
    """The run directory for a process whose first record is at ``step``, and the last
    step logged there before (None: none): the latest run's when ``step`` is past every
    step it holds, else a new ``run-N``.

    Raises:
        ConfigError: ``root`` exists and is not a directory (naming it).
    """
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"{root}: the TensorBoard log directory (beside the model directory, or "
            f"${ENV} without one) is a file; move it, or leave the tensorboard plugin out "
            f"with SEQ2SEQ_KIT_PLUGINS"
        )
    runs = run_directories(root)
    if runs:
        number, latest = runs[-1]
        last = last_step(latest)
        if last is None or last < step:
            return latest, last
    else:
        number = 0
    return root / f"run-{number + 1}", None


@dataclass
class RunLog:
    """The event file a process writes for one run.

    Attributes:
        directory: the run directory. writer: its ``tensorboardX.SummaryWriter``.
        last: the highest step written to the run (by this process or an earlier one).
    """

    directory: Path
    writer: Any
    last: int | None

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Add ``scalars`` at ``step`` and flush, so that TensorBoard (and a crash) sees
        every record at once."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        self.last = step if self.last is None else max(self.last, step)

    def close(self) -> None:
        self.writer.close()


_open: dict[Path, RunLog] = {}


def log_scalars(root: Path, step: int, scalars: dict[str, float]) -> None:
    """Write ``scalars`` at ``step`` to the run this process writes under ``root``, opening
    it (:func:`choose_run`) on the first record, or on a step before the last written."""
    if not scalars:
        return
    log = _open.get(root)
    if log is not None and log.last is not None and step < log.last:
        close(root)
        log = None
    if log is None:
        directory, last = choose_run(root, step)
        log = _open[root] = RunLog(directory, summary_writer(directory), last)
    log.write(step, scalars)


def close(root: Path) -> None:
    """Close the event file of the run written under ``root``, if one is open."""
    log = _open.pop(root, None)
    if log is not None:
        log.close()
