"""Where and how a model runs: intra-op threads, device, precision, and the data-parallel
process group of a run started by a launcher (``torchrun``, or ``TF_CONFIG`` for
``tf.distribute``).

The core imports no framework: a backend that declares the ``distributed`` capability
provides :attr:`seq2seq_kit.backend.Backend.join`, which makes a :class:`ProcessGroup` on
its framework's own collectives, and the trainer uses only the few operations below
(world size, rank, a sum of a few floats, a barrier).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: ``[train] device`` values: ``auto`` (a GPU when the backend finds one, else the CPU),
#: ``cpu``, ``cuda`` (the first GPU, or the local rank's under a launcher), ``cuda:N``.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"

Precision = Literal["fp32", "bf16", "fp16"]


@runtime_checkable
class ProcessGroup(Protocol):
    """The processes of one data-parallel run, as the trainer sees them.

    Attributes:
        rank: this process's number, 0 .. ``world_size - 1``; rank 0 alone writes the
            model directory, logs and shows progress.
        world_size: the number of processes.
        launcher: what started them (``"torchrun"``, ``"tf_config"``), for messages and
            the model's metadata.
    """

    rank: int
    world_size: int
    launcher: str

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        """The element-wise sum over all ranks of ``values`` (a few float64 numbers, the
        same count on every rank). Blocks until every rank has called it.

        Raises:
            Exception: the framework's error when a rank has failed or stopped.
        """

    def barrier(self) -> None:
        """Return once every rank has called it."""

    def failed_ranks(self, error: BaseException) -> list[int]:
        """After a collective raised ``error``: the ranks found to have failed or stopped
        (best effort; empty when it cannot tell)."""

    def close(self) -> None:
        """Leave the group (at the end of the run, or after a failure)."""


@dataclass(frozen=True)
class SingleProcess:
    """The group of a run in one process: every operation is the identity."""

    rank: int = 0
    world_size: int = 1
    launcher: str = "none"

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    def barrier(self) -> None:
        return None

    def failed_ranks(self, error: BaseException) -> list[int]:
        return []

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class Runtime:
    """How a backend runs a model: handed to ``Backend.build`` as ``runtime=``.

    Attributes:
        threads: intra-op threads for this process (>= 1; see :func:`resolve_threads`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``[train] device``).
        precision: ``"fp32"``, or mixed precision ``"bf16"`` / ``"fp16"`` (weights, loss
            and optimizer state stay float32; fp16 scales the loss, bf16 needs no scaling).
        group: the data-parallel :class:`ProcessGroup`, or None in one process. A model
            built with a group sums its gradients over the group's ranks in
            ``train_step`` (see :class:`seq2seq_kit.backend.Model`).
        quantization: for inference, a scheme of :data:`seq2seq_kit.quantization.SCHEMES`
            (``"int8"``...) the backend runs the model in, from its float32 weights (only
            with the scheme's capability); None: as the weights are (float32 for a model
            directory, the scheme recorded in an export).
    """

    threads: int = 1
    device: str = "cpu"
    precision: Precision = "fp32"
    group: ProcessGroup | None = None
    quantization: str | None = None

    @property
    def world_size(self) -> int:
        return 1 if self.group is None else self.group.world_size


@dataclass(frozen=True)
class Launch:
    """A data-parallel launch found in the environment (:func:`launch_environment`).

    Attributes:
        launcher: ``"torchrun"`` or ``"tf_config"``.
        rank, world_size: this process's rank and the number of processes.
        local_rank, local_world_size: the same among the processes of this machine
            (unknown for ``TF_CONFIG``: 0 and 1).
    """

    launcher: str
    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1


class LaunchError(ValueError):
    """The launcher's environment variables are malformed (named in the message)."""


def launch_environment(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The data-parallel launch this process belongs to, read from the variables that
    ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``; see
    torch.distributed.run) or from ``TF_CONFIG`` (``cluster.worker``, ``task.index``; see
    ``tf.distribute.cluster_resolver.TFConfigClusterResolver``); None for a single process
    (neither set, or a world of one).

    Raises:
        LaunchError: a variable that is not a number, a rank outside the world, or a
            ``TF_CONFIG`` that is not JSON of that shape.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "RANK" in env:
        world = _int_variable(env, "WORLD_SIZE", "1")
        rank = _int_variable(env, "RANK", "0")
        local_rank = _int_variable(env, "LOCAL_RANK", str(rank))
        local_world = _int_variable(env, "LOCAL_WORLD_SIZE", str(world))
        if world < 1 or not 0 <= rank < world:
            raise LaunchError(f"torchrun's environment: RANK={rank} outside WORLD_SIZE={world}")
        if world == 1:
            return None
        return Launch("torchrun", rank, world, local_rank, max(local_world, 1))
    if env.get("TF_CONFIG"):
        try:
            config = json.loads(env["TF_CONFIG"])
            workers = list(config["cluster"]["worker"])
            task = config["task"]
            kind, index = task["type"], int(task["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LaunchError(
                f"TF_CONFIG is not {{'cluster': {{'worker': [...]}}, 'task': {{'type': "
                f"'worker', 'index': N}}}} ({type(exc).__name__}: {exc})"
            ) from None
        if kind != "worker" or not 0 <= index < len(workers):
            raise LaunchError(
                f"TF_CONFIG: task {kind!r} {index} is not one of the {len(workers)} workers"
            )
        if len(workers) == 1:
            return None
        return Launch("tf_config", index, len(workers))
    return None


def _int_variable(env: Mapping[str, str], name: str, default: str) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        raise LaunchError(
            f"torchrun's environment: {name}={env[name]!r} is not a whole number"
        ) from None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; the cgroup's CPU quota when
    one is set and smaller)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_cpu_quota() -> int | None:
    """Whole CPUs of a cgroup v2 quota (``cpu.max``), rounded up; None without one."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as file:
            quota, period = file.read().split()
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, -(-int(quota) // int(period)))


def machine_memory() -> int | None:
    """Bytes of memory this process's machine has: the physical memory, or the cgroup v2
    limit (``memory.max``) when one is set and smaller; None where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on a POSIX system
        total = None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as file:
            limit = file.read().strip()
    except OSError:
        limit = "max"
    if limit.isdigit():
        total = int(limit) if total is None else min(total, int(limit))
    return total if total and total > 0 else None


#: The most threads ``[train] threads`` and ``OMP_NUM_THREADS`` may ask for; a larger
#: ``OMP_NUM_THREADS`` is ignored like a malformed one (frameworks crash creating that many).
MAX_THREADS = 1024


def resolve_threads(
    configured: int, local_processes: int = 1, environ: Mapping[str, str] | None = None
) -> int:
    """Intra-op threads for one process: ``configured`` when above 0; else
    ``OMP_NUM_THREADS`` when the environment sets it (the convention of every OpenMP
    program); else this process's share of the cores idle now: the usable cores shared
    among this machine's ``local_processes`` of the run, less one for each other process
    running at this moment (:func:`busy_elsewhere`), at least 1.

    Frameworks default to a thread per core and wait for all of them at the end of every
    parallel operator; a thread whose core another process holds makes the others wait
    (spinning, with OpenMP's default policy): on a busy 2-core machine a 2-thread digits
    run took over 15x as long as a 1-thread one. Work that arrives after the start is not
    seen; ``--threads 1`` or ``OMP_WAIT_POLICY=PASSIVE`` guard against it.
    """
    if configured > 0:
        return configured
    env = os.environ if environ is None else environ
    try:
        from_env = int(env.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:  # unset, empty or malformed: ignored, as OpenMP runtimes do
        from_env = 0
    if 0 < from_env <= MAX_THREADS:
        return from_env
    cores = usable_cores()
    return max(1, min(cores // max(local_processes, 1), cores - busy_elsewhere()))


def busy_elsewhere() -> int:
    """Processes (threads, strictly) running or ready to run now besides this one: the
    kernel's count of runnable tasks (``/proc/loadavg``'s fourth field, ``running/total``;
    see proc(5)), less this process, the least of three looks 10 ms apart (a look sees a
    short-lived task or two as well). 0 where there is no ``/proc``.

    It is a snapshot, not the 1-minute load average, which trails a process that just
    started by most of a minute; it counts the whole machine, also outside a container's
    CPU quota (so it errs towards fewer threads).
    """
    import time

    looks = []
    for attempt in range(3):
        if attempt:
            time.sleep(0.01)
        try:
            with open("/proc/loadavg", encoding="ascii") as file:
                running = int(file.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        looks.append(running - 1)  # this process, reading the file, is running
    return max(0, min(looks))
