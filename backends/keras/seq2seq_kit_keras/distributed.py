"""Data-parallel training with ``tf.distribute.MultiWorkerMirroredStrategy``: one process
per worker, started with ``TF_CONFIG`` (the cluster's ``worker`` addresses and this
process's ``task.index``), collective operations over gRPC between the workers.

:func:`join` makes the strategy and returns a :class:`KerasGroup`, the core's
:class:`seq2seq_kit.runtime.ProcessGroup`. A model built with it
(:class:`..model.KerasModel`) creates its variables under ``strategy.scope()`` and sums
its gradients over the workers with the strategy's all-reduce.

A worker that dies is noticed by TensorFlow's coordination service, which task 0 runs:
the others stop sending it heartbeats, and it aborts every pending collective with an
``UnavailableError`` naming the task (``/job:worker/replica:0/task:N``). Measured with
TF 2.21 on loopback: a worker killed between two updates is reported to the other in
about 10 s.
"""

from __future__ import annotations

from . import configure_environment

configure_environment()

import re  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import tensorflow as tf  # noqa: E402

from seq2seq_kit.errors import BackendError  # noqa: E402
from seq2seq_kit.runtime import Launch, Runtime  # noqa: E402

from .placement import apply_threads, device_name  # noqa: E402

#: How long a worker other than 0 waits to register with worker 0's coordination service
#: before it gives up (TensorFlow's default is to wait forever).
REGISTER_TIMEOUT_S = 300

# A task TensorFlow names in an error: "/job:worker/replica:0/task:1", "/job:worker/task:1".
_TASK = re.compile(r"/job:worker/(?:replica:\d+/)?task:(\d+)")


class KerasGroup:
    """The workers of a ``MultiWorkerMirroredStrategy`` run, as the trainer sees them.

    Attributes:
        rank, world_size: this worker's ``task.index`` and the number of workers.
        launcher: ``"tf_config"``.
        strategy: the ``tf.distribute.MultiWorkerMirroredStrategy``.
    """

    launcher = "tf_config"

    def __init__(self, strategy: tf.distribute.Strategy, rank: int, world_size: int):
        self.strategy = strategy
        self.rank = rank
        self.world_size = world_size
        self._sum = tf.function(self._sum_replicas, autograph=False)

    def _sum_replicas(self, values: tf.Tensor) -> tf.Tensor:
        def replica(values):
            context = tf.distribute.get_replica_context()
            # identity: the all-reduce sends a tensor from the replica's own device (a
            # function argument has none, and the strategy then finds no destination)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(values))

        return self.strategy.run(replica, args=(values,))

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        """The element-wise float64 sum of ``values`` over the workers (a collective every
        worker must call with as many values).

        Raises:
            tf.errors.OpError: a worker failed or stopped (see :meth:`failed_ranks`).
        """
        summed = self._sum(tf.constant([float(v) for v in values], tf.float64))
        return [float(v) for v in summed.numpy()]

    def barrier(self) -> None:
        """Return once every worker has called it (an all-reduce of nothing much)."""
        self.all_reduce([0.0])

    def failed_ranks(self, error: BaseException) -> list[int]:
        """The workers other than this one that ``error``'s message names (TensorFlow's
        coordination service names the tasks that stopped sending heartbeats); empty when
        it names none."""
        named = {int(task) for task in _TASK.findall(str(error))}
        return sorted(r for r in named if r != self.rank and r < self.world_size)

    def close(self) -> None:
        """Nothing to release: the strategy's servers end with the process (TensorFlow
        cannot shut them down earlier)."""


def worker_gpus(device: str) -> list:
    """The one GPU a worker trains on for ``[train] device`` (``cuda:N``: GPU N; ``cuda``
    and ``auto``: GPU 0, so workers sharing a machine each need their own ``cuda:N``), or
    none (``cpu``, or no GPU with ``auto``).

    Raises:
        BackendError: a ``cuda`` device TensorFlow does not see.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" or (device == "auto" and not gpus):
        return []
    index = int(device.partition(":")[2] or 0)
    if index >= len(gpus):
        device_name(device)  # raises, naming what TensorFlow sees
    return [gpus[index]]


def _configure_coordination(workers: int) -> None:
    """Set up TensorFlow's coordination service as MultiWorkerMirroredStrategy would (task
    0 leads; see collective_all_reduce_strategy.py, which skips its own set-up when one is
    configured), with :data:`REGISTER_TIMEOUT_S` to wait for the workers."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader="/job:worker/replica:0/task:0",
        cluster_register_timeout_in_ms=REGISTER_TIMEOUT_S * 1000,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=workers)],
    )


def join(launch: Launch, runtime: Runtime) -> KerasGroup:
    """Join the ``TF_CONFIG`` run this process is worker ``launch.rank`` of. Must come
    before anything else in the process uses TensorFlow (collective operations are set up
    when its runtime starts); applies ``runtime.threads`` first for the same reason.

    Blocks until every worker of ``TF_CONFIG``'s cluster has started: a worker other than
    0 gives up after :data:`REGISTER_TIMEOUT_S`; worker 0 waits for as long as it takes
    (TensorFlow's coordination service has no limit there, measured with TF 2.21), and
    ignores SIGTERM meanwhile: stop it with SIGKILL.

    Raises:
        BackendError: a launcher other than ``TF_CONFIG``, TensorFlow already running, a
            ``cuda`` device it does not see, or worker 0 not found in time.
    """
    if launch.launcher != "tf_config":
        raise BackendError(
            f"the keras backend trains data-parallel with TF_CONFIG "
            f"(MultiWorkerMirroredStrategy), not under {launch.launcher}; start one process "
            f"per worker with TF_CONFIG set, or use a backend that supports {launch.launcher}"
        )
    apply_threads(runtime.threads)
    try:
        # The strategy makes a replica of every visible GPU: leave this worker one, or none
        tf.config.set_visible_devices(worker_gpus(runtime.device), "GPU")
        _configure_coordination(launch.world_size)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError:
        raise BackendError(
            f"worker {launch.rank}: worker 0 of TF_CONFIG's cluster did not take this worker "
            f"in within {REGISTER_TIMEOUT_S} s (not started, or another address or port); "
            f"start every worker with the same cluster list"
        ) from None
    except (RuntimeError, ValueError) as exc:
        raise BackendError(
            f"cannot join the TF_CONFIG run as worker {launch.rank}: {exc} (TensorFlow must "
            f"not have run anything in this process before)"
        ) from None
    if strategy.num_replicas_in_sync != launch.world_size:
        raise BackendError(
            f"TF_CONFIG names {launch.world_size} workers but the strategy has "
            f"{strategy.num_replicas_in_sync} replicas (one device per worker is supported)"
        )
    return KerasGroup(strategy, launch.rank, launch.world_size)
