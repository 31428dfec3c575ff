"""Data-parallel training on ``torch.distributed``: joining the run ``torchrun`` started
(:func:`join`), the trainer's :class:`seq2seq_kit.runtime.ProcessGroup` on its collectives
(:class:`TorchGroup`), and the ``DistributedDataParallel`` wrapper of a network
(:func:`data_parallel`).

Rendezvous is ``env://``: torchrun sets ``MASTER_ADDR``/``MASTER_PORT`` (and ``RANK``,
``WORLD_SIZE``...) for every worker, single node or multi-node with ``--rdzv-backend
c10d``. Gradients travel over gloo on the CPU and NCCL on GPUs.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from seq2seq_kit.errors import BackendError
from seq2seq_kit.runtime import Launch, Runtime

from .placement import resolve_device

#: How long a collective waits for the other ranks before it fails. Rank 0 alone saves
#: checkpoints while the others wait at the next update, so this bounds a save too.
TIMEOUT = timedelta(minutes=10)

#: How long a rank whose collective failed waits for the other survivors to say they are
#: alive (:meth:`TorchGroup.failed_ranks`). torchrun's agent sends SIGTERM to the
#: survivors within ``--monitor-interval`` (0.1 s) of a worker's death and SIGKILL 30 s
#: later; the trainer absorbs the SIGTERM, so a second is well within the grace period.
CHECK_IN_SECONDS = 1.0

#: The variables of the ``env://`` rendezvous (torchrun sets them), for error messages.
_RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")


def join(launch: Launch, runtime: Runtime) -> TorchGroup:
    """Join the process group of a torchrun launch as ``launch.rank`` of
    ``launch.world_size``: gloo on the CPU, NCCL on GPUs (each process then uses GPU
    ``launch.local_rank`` as its ``cuda`` device).

    Raises:
        BackendError: the rendezvous failed (``MASTER_ADDR``/``MASTER_PORT`` missing or
            unreachable, the other ranks not there within :data:`TIMEOUT`), with torch's
            reason.
    """
    if launch.launcher != "torchrun":
        raise BackendError(
            f"backend 'torch' trains data-parallel under torchrun, and this process was "
            f"started by {launch.launcher} (TF_CONFIG is tf.distribute's: use --backend keras, "
            f"or start the run with torchrun)"
        )
    # a GPU that is not there is refused by name before anything touches CUDA
    device = resolve_device(runtime.device)
    cuda = device.type == "cuda"
    if cuda and runtime.device in ("auto", "cuda"):
        # "cuda" means the current GPU: make it this process's own on a shared machine
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            init_method="env://",
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=TIMEOUT,
        )
    except (ValueError, RuntimeError) as exc:
        where = ", ".join(f"{k}={os.environ.get(k, '(not set)')}" for k in _RENDEZVOUS)
        raise BackendError(
            f"rank {launch.rank} of {launch.world_size} cannot join the torch.distributed "
            f"group ({where}): {str(exc).strip()[:300]}; start the run with torchrun"
        ) from None
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return TorchGroup(launch.rank, launch.world_size, launch.launcher, device)


class TorchGroup:
    """The trainer's :class:`seq2seq_kit.runtime.ProcessGroup` on ``torch.distributed``'s
    default group (made by :func:`join`).

    Attributes:
        rank, world_size, launcher: as the protocol says.
        device: where the all-reduced values live (NCCL reduces GPU tensors only).
    """

    def __init__(self, rank: int, world_size: int, launcher: str, device: torch.device):
        self.rank, self.world_size, self.launcher = rank, world_size, launcher
        self.device = device
        # torchrun's workers share the agent's store (TORCHELASTIC_USE_AGENT_STORE), which
        # outlives any worker: failed_ranks meets the survivors there.
        self._store = dist.distributed_c10d._get_default_store()
        self._keys = f"seq2seq-kit/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        """Element-wise float64 sum of ``values`` over the ranks (one collective)."""
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        dist.barrier()

    def failed_ranks(self, error: BaseException) -> list[int]:
        """The ranks gone when ``error`` was raised: this rank itself for an error of its
        own (not one of a collective), which it records in the store for the others; after a
        collective's error, the ranks that recorded such an error or did not say they are
        alive within :data:`CHECK_IN_SECONDS` (a rank that is alive but slower to notice is
        counted as failed: best effort). Empty when the store cannot be reached; ``[0]``
        then outside torchrun's agent, when rank 0's process held the store."""
        collective = _from_collective(error)
        try:
            if not collective:
                self._store.set(f"{self._keys}/failed/{self.rank}", "1")
                return [self.rank]
            self._store.set(f"{self._keys}/alive/{self.rank}", "1")
            deadline = time.monotonic() + CHECK_IN_SECONDS
            while True:
                failed = [r for r in range(self.world_size) if self._gone(r)]
                silent = [r for r in failed if not self._has(f"failed/{r}")]
                if not silent or time.monotonic() >= deadline:
                    return failed
                time.sleep(0.02)
        except Exception:  # the store went with its host
            agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            return [] if agent or self.rank == 0 or not collective else [0]

    def _gone(self, rank: int) -> bool:
        return self._has(f"failed/{rank}") or not self._has(f"alive/{rank}")

    def _has(self, key: str) -> bool:
        return bool(self._store.check([f"{self._keys}/{key}"]))

    def close(self) -> None:
        """Leave the group (destroys torch's default process group)."""
        if dist.is_initialized():
            dist.destroy_process_group()


def _from_collective(error: BaseException) -> bool:
    """Whether ``error`` came from a collective of the group, rather than from this rank's
    own computation: torch's distributed errors, and the RuntimeErrors that gloo and NCCL
    raise through DDP's backward (gloo's "Connection closed by peer" is one)."""
    if isinstance(error, dist.DistError | TimeoutError | ConnectionError):
        return True
    text = str(error)
    markers = ("gloo", "NCCL", "c10d", "Connection closed", "Connection reset", "ProcessGroup")
    return isinstance(error, RuntimeError) and any(marker in text for marker in markers)


def data_parallel(net: nn.Module) -> nn.parallel.DistributedDataParallel:
    """``net`` wrapped for training on the default process group: its backward averages
    the gradients over the ranks (bucketed all-reduces overlapping the backward).

    Every rank must give every trained parameter a gradient at every synchronised
    backward, else DDP fails at the next update, naming the parameters. Our networks use
    every parameter on every batch but one case, an RNN batch whose sources are all empty
    (the encoder is skipped), which the model joins to the graph itself (a term times 0).
    So ``find_unused_parameters`` stays off: it would cost little (a walk of the autograd
    graph per forward: +0.4% on an LSTM-256 step, within noise on a Transformer), but
    prints a warning on every rank of every run where it finds nothing. Buffers (the
    Transformer's sinusoid tables) are constants: they are not broadcast before every forward.
    """
    device = next(net.parameters()).device
    options = {"device_ids": [device.index] if device.type == "cuda" else None}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters:
        options["forward_sync_buffers"] = False  # torch >= 2.13 (broadcast_buffers before)
    else:
        options["broadcast_buffers"] = False
    return nn.parallel.DistributedDataParallel(net, find_unused_parameters=False, **options)
