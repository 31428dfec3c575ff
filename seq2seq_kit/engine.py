"""What runs a training: the backend chosen to train, by its name, and the runtime this
process builds the model for (threads, device, precision and, under a launcher such as
``torchrun``, the data-parallel process group it joins), once checked that the backend can
train, resume and train data-parallel as the run asks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace as replaced

from .backend import Backend
from .config import Config
from .errors import BackendError, ConfigError, option
from .plugins import registry
from .runtime import (
    Launch,
    LaunchError,
    ProcessGroup,
    Runtime,
    launch_environment,
    resolve_threads,
)


@dataclass(frozen=True)
class Engine:
    """The backend a run trains with, the name it was chosen by (recorded in
    ``model.json``), and the :class:`~seq2seq_kit.runtime.Runtime` its model is built for."""

    backend: Backend
    name: str
    runtime: Runtime

    @property
    def group(self) -> ProcessGroup | None:
        """The data-parallel group this process joined; None in one process."""
        return self.runtime.group

    @property
    def rank(self) -> int:
        """This process's rank, 0 alone; rank 0 writes the model directory and logs."""
        return 0 if self.group is None else self.group.rank

    @property
    def world_size(self) -> int:
        """The number of processes training together, 1 alone."""
        return self.runtime.world_size

    @property
    def launcher(self) -> str:
        """What started the processes: ``"none"`` alone, ``"torchrun"``, ``"tf_config"``."""
        return "none" if self.group is None else self.group.launcher


def check_trainable(chosen: Backend, name: str, *, resuming: bool) -> None:
    """Refuse a backend that cannot train, or, ``resuming``, continue a saved run.

    Raises:
        BackendError: ``chosen`` (registered as ``name``) does not declare the ``train``
            capability (inference only), or resuming, ``resume``.
    """
    if "train" not in chosen.capabilities:
        raise BackendError(
            f"backend {name!r} is inference only: it does not declare the 'train' "
            f"capability (it declares {sorted(chosen.capabilities)}); train with another "
            f"backend, then translate or serve the model with {option('backend', name)}"
        )
    if resuming and "resume" not in chosen.capabilities:
        raise BackendError(
            f"backend {name!r} does not declare the 'resume' capability: it cannot "
            f"continue a saved training; start a new run, or resume with another backend"
        )


def join_launch(chosen: Backend, name: str, cfg: Config) -> Launch | None:
    """The data-parallel launch this process is part of (None alone), once checked that
    the backend and the config can train that way.

    Raises:
        ConfigError: malformed launcher variables, or a config data-parallel training
            cannot follow.
        BackendError: the backend does not declare ``distributed``.
    """
    try:
        launch = launch_environment()
    except LaunchError as exc:
        raise ConfigError(str(exc)) from None
    if launch is None:
        return None
    started = (
        f"this process was started as rank {launch.rank} of {launch.world_size} by "
        f"{'torchrun' if launch.launcher == 'torchrun' else 'TF_CONFIG'}"
    )
    if "distributed" not in chosen.capabilities or chosen.join is None:
        able = sorted(
            b.name
            for b in registry().backends.values()
            if "distributed" in b.capabilities and b.join is not None
        )
        raise BackendError(
            f"{started}, but backend {name!r} does not declare the 'distributed' "
            f"capability: it trains in one process only (installed backends that declare it: "
            f"{', '.join(able) or 'none'}); run it without the launcher"
        )
    if cfg.train.teacher_forcing < 1.0:
        raise ConfigError(
            f"{started}: train.teacher_forcing = {cfg.train.teacher_forcing} (scheduled "
            f"sampling) is not supported in data-parallel training; set it to 1.0 or train "
            f"in one process"
        )
    return launch


@contextlib.contextmanager
def engine(cfg: Config, chosen: Backend, name: str, launch: Launch | None) -> Iterator[Engine]:
    """The engine of backend ``chosen`` (registered as ``name``) with the threads, device
    and precision ``cfg.train`` sets; under ``launch`` (:func:`join_launch`) it joins the
    launch's process group for as long as the block runs, sharing this machine's cores
    among its processes there.

    Raises:
        Exception: the backend's error when joining the group fails.
    """
    local_processes = 1 if launch is None else launch.local_world_size
    runtime = Runtime(
        threads=resolve_threads(cfg.train.threads, local_processes),
        device=cfg.train.device,
        precision=cfg.train.precision,
    )
    if launch is None:
        yield Engine(chosen, name, runtime)
        return
    assert chosen.join is not None  # checked by join_launch
    group = chosen.join(launch, runtime)
    try:
        yield Engine(chosen, name, replaced(runtime, group=group))
    finally:
        group.close()
