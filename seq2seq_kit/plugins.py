"""Plugin discovery: entry points in the ``seq2seq_kit`` group, loaded one by one with pluggy.

First-party backends register exactly as third-party ones do. A plugin that fails to import
or to register is recorded with its reason and skipped; the others keep working.

``SEQ2SEQ_KIT_PLUGINS`` restricts loading to a comma-separated list of entry-point or
distribution names (empty string: load none), as ``LLM_LOAD_PLUGINS`` does for llm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import BackendError

GROUP = "seq2seq_kit"
ALLOW_ENV = "SEQ2SEQ_KIT_PLUGINS"

#: pip requirement for each first-party backend, for "not installed" errors.
FIRST_PARTY = {
    "numpy": "seq2seq-kit-numpy",
    "torch": "seq2seq-kit[torch]",
    "keras": "seq2seq-kit[keras]",
}


@dataclass
class Registry:
    manager: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _allowed(name: str, dist: str | None) -> bool:
    allow = os.environ.get(ALLOW_ENV)
    if allow is None:
        return True
    names = {n.strip() for n in allow.split(",") if n.strip()}
    return name in names or (dist is not None and dist in names)


def _collect(manager: pluggy.PluginManager, hook: str, plugin: Any) -> list[tuple[Any, ...]]:
    """Call ``hook`` of ``plugin`` alone, so each registration is attributed to its plugin."""
    found: list[tuple[Any, ...]] = []
    others = [p for p in manager.get_plugins() if p is not plugin]
    manager.subset_hook_caller(hook, others)(register=lambda *args: found.append(args))
    return found


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Load every allowed entry point (and ``extra_plugins``: modules or objects with hook
    implementations, e.g. in tests) into a fresh registry."""
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    from . import datasets as builtin_datasets

    candidates: list[tuple[str, str | None, Any]] = [("builtin", None, builtin_datasets)]
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        if not _allowed(ep.name, dist):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        candidates.append((ep.name, dist, module))
    candidates += [(getattr(p, "__name__", repr(p)), None, p) for p in extra_plugins]

    for name, dist, module in candidates:
        try:
            manager.register(module, name=name)
            backends = _collect(manager, "register_backends", module)
            datasets = _collect(manager, "register_datasets", module)
        except Exception as exc:
            registry.failures[name] = f"registration failed: {type(exc).__name__}: {exc}"
            if manager.is_registered(module):
                manager.unregister(module)
            continue
        for (backend,) in backends:
            backend = replace(backend, distribution=backend.distribution or dist or name)
            other = registry.backends.get(backend.name)
            if other is not None:
                registry.failures[f"{name}:{backend.name}"] = (
                    f"backend name {backend.name!r} is registered by both "
                    f"{other.distribution!r} and {backend.distribution!r}; kept the first"
                )
                continue
            registry.backends[backend.name] = backend
        for dataset_name, load in datasets:
            registry.datasets.setdefault(dataset_name, load)
    return registry


@cache
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return build_registry()


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        BackendError: naming the installed backends and the pip command for ``name``.
    """
    reg = registry()
    backend = reg.backends.get(name)
    if backend is not None:
        return backend
    installed = ", ".join(sorted(reg.backends)) or "none"
    hint = FIRST_PARTY.get(name, f"a package that registers backend {name!r}")
    reasons = [f"{k}: {v}" for k, v in reg.failures.items() if name in k or name in v]
    message = (
        f"backend {name!r} is not installed (installed: {installed}); "
        f"install it with: pip install {hint}"
    )
    if reasons:
        message += "; plugin errors: " + "; ".join(reasons)
    raise BackendError(message)
