"""TensorBoard event files, written and read with tensorboardX (protobuf and NumPy only).

tensorboardX's ``writer`` module runs ``import torch`` when it is imported, only to accept
torch tensors (this plugin passes floats): in an environment with torch installed, a run on
another backend would load torch for its log. :func:`tensorboardx` imports tensorboardX with
torch hidden unless torch is loaded already, so the writer is framework-free. TensorFlow
is never imported by tensorboardX.
"""

from __future__ import annotations

import importlib
import itertools
import os
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: The start of every event file's name (TensorFlow's, which TensorBoard looks for).
EVENT_FILE = "events.out.tfevents."

_writers = itertools.count(1)


def tensorboardx() -> ModuleType:
    """The ``tensorboardX`` package, imported without importing torch."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        import tensorboardX

        return tensorboardX
    # None in sys.modules makes `import torch` raise ImportError, which tensorboardX catches
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tensorboardX
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return tensorboardX


def summary_writer(directory: Path) -> Any:
    """A ``tensorboardX.SummaryWriter`` on a new event file in ``directory`` (created if
    missing).

    tensorboardX names the file by the second it opens it and the host, and opens it for
    writing, emptying a file of that name: the process id and a count in the name keep two
    writers (a run and its resumption in one process, within a second) from sharing one.
    """
    return tensorboardx().SummaryWriter(
        str(directory), filename_suffix=f".{os.getpid()}.{next(_writers)}"
    )


def _records(data: bytes) -> list[bytes]:
    """The payloads of the TFRecord framing of ``data`` (per record: the length as a
    little-endian uint64, its masked CRC-32C, the payload, the payload's masked CRC-32C;
    tensorflow/core/lib/io/record_writer.cc), up to a record cut short by a crash."""
    payloads, at = [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length
        if end + 4 > len(data):
            break
        payloads.append(data[at + 12 : end])
        at = end + 4
    return payloads


def last_step(directory: Path) -> int | None:
    """The highest step of a scalar summary in the event files of ``directory``; None when
    they hold none (or there are none). A file or record that cannot be read counts for
    nothing: what is readable decides."""
    tensorboardx()
    event_pb2 = importlib.import_module("tensorboardX.proto.event_pb2")
    from google.protobuf.message import DecodeError

    steps = []
    for path in directory.glob(EVENT_FILE + "*"):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for payload in _records(data):
            try:
                event = event_pb2.Event.FromString(payload)
            except DecodeError:  # a damaged record
                continue
            if event.HasField("summary"):
                steps.append(event.step)
    return max(steps, default=None)
