"""Where and how a Keras model runs, from the core's :class:`seq2seq_kit.runtime.Runtime`:
TensorFlow's thread pools, the device, the mixed-precision policy, and the
``tf.distribute`` strategy of a data-parallel group (:mod:`.distributed`).

Importing this module imports TensorFlow and Keras (:func:`..configure_environment` first).
"""

from __future__ import annotations

from . import configure_environment

configure_environment()

import contextlib  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from seq2seq_kit.errors import BackendError  # noqa: E402
from seq2seq_kit.runtime import Runtime  # noqa: E402

#: Keras' mixed-precision policy for each ``[train] precision``: weights stay float32,
#: layers compute in bfloat16 / float16 (keras.mixed_precision.Policy).
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}

# The thread counts this process's TensorFlow runtime was given (None: not yet).
_threads_applied: int | None = None


def apply_threads(threads: int) -> None:
    """Give TensorFlow's intra-op and inter-op pools ``threads`` threads each (>= 1).

    TensorFlow reads these once, when its runtime starts (the first operation, variable or
    device query of the process): the first call decides for the whole process. A later
    call asking for another count warns that it cannot change; so does a first call made
    after something else started the runtime (its defaults, a thread per core, then stay).
    """
    global _threads_applied
    if _threads_applied is not None:
        if threads != _threads_applied:
            warnings.warn(
                f"TensorFlow already runs with {_threads_applied} thread(s) in this process; "
                f"{threads} cannot apply until the process restarts",
                RuntimeWarning,
                stacklevel=3,
            )
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # Inter-op: how many independent ops of a graph run at once. One per intra-op
        # thread keeps the total near `threads` (TensorFlow's default is a pool per core).
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime started before seq2seq-kit built anything
        current = tf.config.threading.get_intra_op_parallelism_threads() or "default"
        _threads_applied = threads  # warn once, not at every build
        warnings.warn(
            f"TensorFlow started before this model was built: it keeps {current} intra-op "
            f"thread(s) instead of {threads} in this process",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _threads_applied = threads


def device_name(device: str) -> str:
    """The TensorFlow device of a ``[train] device`` value: ``auto`` is the first GPU when
    TensorFlow sees one, else the CPU; ``cpu`` is ``/CPU:0``; ``cuda`` and ``cuda:N`` are
    ``/GPU:0`` and ``/GPU:N``.

    Raises:
        BackendError: a ``cuda`` device TensorFlow does not see (no GPU, or fewer), or a
            value of another form.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if device == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if device == "cpu":
        return "/CPU:0"
    match = re.fullmatch(r"cuda(?::([0-9]+))?", device)
    if match is None:
        raise BackendError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    index = int(match.group(1) or 0)
    if index >= len(gpus):
        seen = f"{len(gpus)} GPU(s)" if gpus else "no GPU (tensorflow-cpu, or no CUDA driver)"
        raise BackendError(
            f"device {device!r}: TensorFlow sees {seen}; use --device cpu or auto, or a "
            f"TensorFlow build with CUDA on a machine with that GPU"
        )
    return f"/GPU:{index}"


def check_precision(precision: str) -> None:
    """Refuse a precision this backend does not know.

    All three train on a CPU as on a GPU. Measured with TF 2.21 on a CPU with AVX512_BF16
    (num2words LSTM, H 256, batch 64, one thread): bf16 trains 1.3x as many tokens/s as
    fp32 (oneDNN's bfloat16 matmuls; a d_model 256 Transformer 1.5x), fp16 0.7x (no
    float16 arithmetic on that CPU: only the casts and the loss scaling).

    Raises:
        BackendError: a precision that is not fp32, bf16 or fp16.
    """
    if precision not in POLICIES:
        raise BackendError(f"precision {precision!r}: expected one of {sorted(POLICIES)}")


@dataclass(frozen=True)
class Placement:
    """How one model runs: resolved once, when it is built.

    Attributes:
        device: the TensorFlow device (``/CPU:0``, ``/GPU:N``).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        strategy: the ``tf.distribute`` strategy of a data-parallel run, else None.
    """

    device: str
    precision: str = "fp32"
    strategy: Any = None

    @property
    def mixed(self) -> bool:
        return self.precision != "fp32"

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Where a model creates its layers and variables: on :attr:`device` (replicated by
        :attr:`strategy` when there is one), with layers taking the precision's policy.
        Keras reads its global policy when a layer is constructed, so it is set here and
        restored afterwards (other models of the process keep their own)."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(POLICIES[self.precision])
        try:
            with contextlib.ExitStack() as stack:
                if self.strategy is not None:
                    stack.enter_context(self.strategy.scope())
                else:
                    stack.enter_context(tf.device(self.device))
                yield
        finally:
            keras.config.set_dtype_policy(previous)


def placement(runtime: Runtime | None) -> Placement:
    """Apply ``runtime``'s threads and resolve its device, precision and strategy.

    Raises:
        BackendError: a device TensorFlow does not see, an unknown precision, or a
            group this backend did not make (:func:`.distributed.join`).
    """
    runtime = runtime or Runtime(device="cpu")
    apply_threads(runtime.threads)
    strategy = None
    if runtime.group is not None and runtime.group.world_size > 1:
        strategy = getattr(runtime.group, "strategy", None)
        if strategy is None:
            raise BackendError(
                f"the keras backend trains data-parallel only in a group it joined itself "
                f"(TF_CONFIG); got {type(runtime.group).__name__} from "
                f"{runtime.group.launcher!r}"
            )
    # a worker sees only its own device (.distributed.worker_gpus): the first one there is
    device = device_name(runtime.device if strategy is None else "auto")
    check_precision(runtime.precision)
    return Placement(device, runtime.precision, strategy)
