"""Where and how a :class:`.model.TorchModel` runs: intra-op threads, the device, and
mixed precision, from the core's :class:`seq2seq_kit.runtime.Runtime`.

- Threads: ``torch.set_num_threads`` (process-wide; the last model built decides).
- Device: ``auto`` is the first GPU when ``torch.cuda.is_available()``, else the CPU;
  ``cuda`` is ``cuda:LOCAL_RANK`` under a launcher (torchrun sets ``LOCAL_RANK``), else
  ``cuda:0``; ``cuda:N`` must exist.
- Precision: ``bf16``/``fp16`` run the forward passes under ``torch.autocast`` (matrix
  products in 16 bits, reductions such as softmax and the loss in float32; see the autocast
  op lists in the PyTorch AMP documentation). Parameters, gradients, Adam's moments and the
  loss stay float32, as do the log-probabilities handed out. ``fp16`` also scales the loss
  with ``torch.amp.GradScaler`` (float16's 5-bit exponent underflows small gradients;
  bfloat16 has float32's range and needs no scaling). fp16 needs a GPU; bf16 runs on any
  CPU (natively with AVX512-BF16 or AMX, emulated and slower without).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch

from seq2seq_kit.errors import BackendError
from seq2seq_kit.runtime import Runtime

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def apply_threads(threads: int) -> None:
    """Use ``threads`` (>= 1) intra-op threads in this process. Inter-op threads are left
    alone: torch refuses to change them once any parallel work has run, and the models
    here run one operator at a time."""
    if threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_device(device: str, environ: dict[str, str] | None = None) -> torch.device:
    """The ``torch.device`` of ``[train] device`` (see the module docstring).

    Raises:
        BackendError: a GPU was asked for and torch sees none, or ``cuda:N`` with N at or
            past the number of GPUs (both named in the message).
    """
    env = os.environ if environ is None else environ
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if device == "auto":
        device = "cuda"
    if not device.startswith("cuda"):
        raise BackendError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda":
        index = int(env.get("LOCAL_RANK", "0") or 0)
        where = f"cuda:{index} (LOCAL_RANK={env['LOCAL_RANK']})" if "LOCAL_RANK" in env else ""
    else:
        index = int(device.split(":", 1)[1])
        where = ""
    if index >= count:
        built = "" if torch.backends.cuda.is_built() else " (this torch is built without CUDA)"
        seen = f"{count} GPU(s), cuda:0 to cuda:{count - 1}" if count else "no GPU"
        raise BackendError(
            f"device {device!r}{' -> ' + where if where else ''}: torch sees {seen}{built}; "
            f"use --device cpu or auto"
        )
    return torch.device("cuda", index)


class Placement:
    """A model's device and precision: what :class:`.model.TorchModel` asks when it moves
    ids in, runs a forward pass, and takes a step.

    Args:
        runtime: the core's runtime (threads are applied by :func:`apply_threads`, not
            here).

    Attributes:
        device: the ``torch.device`` parameters and ids live on.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        scaler: the ``torch.amp.GradScaler`` of ``fp16``, else None.

    Raises:
        BackendError: from :func:`resolve_device`, or fp16 on the CPU.
    """

    def __init__(self, runtime: Runtime):
        self.device = resolve_device(runtime.device)
        self.precision = runtime.precision
        if runtime.precision == "fp16" and self.device.type == "cpu":
            # torch's CPU LSTM (oneDNN) has no float16 kernel, and CPUs without AVX512-FP16
            # compute float16 products by converting them: bf16 is the CPUs' half format.
            raise BackendError(
                f"precision fp16 needs a GPU (device {runtime.device!r} runs on the CPU); "
                f"use --precision bf16 on a CPU"
            )
        self._dtype = _AUTOCAST_DTYPES.get(runtime.precision)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if runtime.precision == "fp16" else None
        )

    def ids(self, array: np.ndarray) -> torch.Tensor:
        """Integer array -> int64 tensor on the device (one-hot and packing want int64).
        Copies unless the array is already writable int64 (torch warns on read-only
        arrays)."""
        array = np.asarray(array)
        if array.dtype != np.int64 or not array.flags.writeable:
            array = array.astype(np.int64)
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Forward passes inside run in the mixed precision (nothing for fp32)."""
        if self._dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self._dtype):
            yield

    def unscale(self, gradient: torch.Tensor) -> torch.Tensor:
        """A gradient left by :meth:`backward`, divided by the fp16 loss scale."""
        return gradient if self.scaler is None else gradient / self.scaler.get_scale()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, the loss scaled by the fp16 scaler's factor."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
