"""Plugin discovery: entry points in the ``seq2seq_kit`` group, loaded one by one with pluggy.

First-party backends register exactly as third-party ones do. A plugin that fails to import
or to register is recorded with its reason and skipped; the others keep working. A plugin
module found more than once (through two entry points, or through an entry point and
``extra_plugins``) is registered once, under the first name it was found by.

``SEQ2SEQ_KIT_PLUGINS`` restricts loading to a comma-separated list of entry-point or
distribution names (empty string: load none), as ``LLM_LOAD_PLUGINS`` does for llm.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import BackendError
from .quantization import check_scheme

GROUP = "seq2seq_kit"
ALLOW_ENV = "SEQ2SEQ_KIT_PLUGINS"
#: The core's own datasets and tokenizers, registered through the same hooks as a plugin's
#: and imported by name, so that the registry's module imports none of them (they use it).
BUILTIN_PLUGINS = (
    ("builtin", "seq2seq_kit.datasets"),
    ("builtin-tokenizers", "seq2seq_kit.tokenizers"),
    ("builtin-marian", "seq2seq_kit.importers.marian"),
)

#: The distribution of each first-party backend and its folder in the source tree.
FIRST_PARTY = {
    "numpy": ("seq2seq-kit-numpy", "backends/numpy"),
    "torch": ("seq2seq-kit-torch", "backends/torch"),
    "keras": ("seq2seq-kit-keras", "backends/keras"),
    "jax": ("seq2seq-kit-jax", "backends/jax"),
    "onnx": ("seq2seq-kit-onnx", "backends/onnx"),
    "ctranslate2": ("seq2seq-kit-ctranslate2", "backends/ctranslate2"),
}

#: First-party distributions a package index serves. Until one is there, the install hint
#: for it points at the source tree, the only place it can be installed from.
PUBLISHED: frozenset[str] = frozenset()


@dataclass
class Registry:
    """The loaded plugins.

    Attributes:
        manager: the pluggy manager holding every registered plugin.
        backends: backend name -> backend.
        datasets: dataset name -> loader.
        tokenizers: tokenizer name -> ``make(options, directory, prefix)``.
        exporters: export format name -> ``export(checkpoint, out) -> list[Path]``.
        export_schemes: export format name -> the quantization schemes its exporter writes
            (``export(checkpoint, out, quantization=SCHEME)``); empty: float32 only.
        importers: import format name -> ``read(source) -> Checkpoint``.
        failures: plugin name (or ``plugin:backend``) -> why it was skipped.
        excluded: entry-point name -> distribution (or None), for each plugin that
            ``SEQ2SEQ_KIT_PLUGINS`` kept from loading.
        allow: the names ``SEQ2SEQ_KIT_PLUGINS`` lists; None when it is unset.
        unmatched: the names in ``allow`` that no installed entry point or distribution has.
    """

    manager: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    tokenizers: dict[str, Any] = field(default_factory=dict)
    exporters: dict[str, Any] = field(default_factory=dict)
    export_schemes: dict[str, frozenset[str]] = field(default_factory=dict)
    importers: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str | None] = field(default_factory=dict)
    allow: frozenset[str] | None = None
    unmatched: frozenset[str] = frozenset()

    def filter_note(self) -> str | None:
        """What ``SEQ2SEQ_KIT_PLUGINS`` left out, in words; None when it left out nothing."""
        parts = []
        if self.excluded:
            parts.append(f"it excluded the plugins {', '.join(sorted(self.excluded))}")
        if self.unmatched:
            names = ", ".join(map(repr, sorted(self.unmatched)))
            parts.append(f"no installed plugin is named {names}")
        if self.allow is None or not parts:
            return None
        return f"{ALLOW_ENV}={','.join(sorted(self.allow))!r}: " + "; ".join(parts)


def _allow_list() -> frozenset[str] | None:
    allow = os.environ.get(ALLOW_ENV)
    if allow is None:
        return None
    return frozenset(n.strip() for n in allow.split(",") if n.strip())


def _collect(manager: pluggy.PluginManager, hook: str, plugin: Any) -> list[tuple[Any, ...]]:
    """Call ``hook`` of ``plugin`` alone, so each registration is attributed to its plugin."""
    found: list[tuple[Any, ...]] = []
    others = [p for p in manager.get_plugins() if p is not plugin]
    manager.subset_hook_caller(hook, others)(register=lambda *args: found.append(args))
    return found


def _candidates(
    registry: Registry, extra_plugins: tuple[Any, ...]
) -> list[tuple[str, str | None, Any]]:
    """(name, distribution, module) of every plugin to register, each module once."""
    found: list[tuple[str, str | None, Any]] = [
        (name, None, importlib.import_module(module)) for name, module in BUILTIN_PLUGINS
    ]
    names: set[str | None] = set()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        names |= {ep.name, dist}
        if registry.allow is not None and not {ep.name, dist} & registry.allow:
            registry.excluded[ep.name] = dist
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        found.append((ep.name, dist, module))
    if registry.allow is not None:
        registry.unmatched = registry.allow - names
    found += [(getattr(p, "__name__", repr(p)), None, p) for p in extra_plugins]
    # An installed plugin whose folder is also on sys.path (an editable install, a test
    # passing it as an extra) arrives more than once as the same module object.
    unique: dict[int, tuple[str, str | None, Any]] = {}
    for name, dist, module in found:
        unique.setdefault(id(module), (name, dist, module))
    return list(unique.values())


def _register(
    registry: Registry, name: str, module: Any
) -> dict[str, list[tuple[Any, ...]]] | None:
    """Register ``module`` and collect its backends, datasets, tokenizers, exporters and
    importers by hook name; None (with the reason in ``registry.failures``) when it fails,
    leaving every plugin registered before in place."""
    manager = registry.manager
    try:
        manager.register(module, name=name)
    except Exception as exc:  # e.g. a second plugin under a name already taken
        registry.failures[name] = f"registration failed: {type(exc).__name__}: {exc}"
        return None
    try:
        return {
            hook: _collect(manager, hook, module)
            for hook in (
                "register_backends",
                "register_datasets",
                "register_tokenizers",
                "register_exporters",
                "register_importers",
            )
        }
    except Exception as exc:
        registry.failures[name] = f"registration failed: {type(exc).__name__}: {exc}"
        manager.unregister(module)
        return None


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Load every allowed entry point (and ``extra_plugins``: modules or objects with hook
    implementations, e.g. in tests) into a fresh registry. Never raises for a plugin's
    fault: each failure is recorded in :attr:`Registry.failures`."""
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager, allow=_allow_list())
    owners: dict[tuple[str, str], str] = {}
    for name, dist, module in _candidates(registry, extra_plugins):
        registered = _register(registry, name, module)
        if registered is None:
            continue
        for (backend,) in registered["register_backends"]:
            backend = replace(backend, distribution=backend.distribution or dist or name)
            other = registry.backends.get(backend.name)
            if other is not None:
                registry.failures[f"{name}:{backend.name}"] = (
                    f"backend name {backend.name!r} is registered by both "
                    f"{other.distribution!r} and {backend.distribution!r}; kept the first"
                )
                continue
            registry.backends[backend.name] = backend
        for dataset_name, load in registered["register_datasets"]:
            registry.datasets.setdefault(dataset_name, load)
        for tokenizer_name, make in registered["register_tokenizers"]:
            registry.tokenizers.setdefault(tokenizer_name, make)
        for kind, found, hook in (
            ("export", registry.exporters, "register_exporters"),
            ("import", registry.importers, "register_importers"),
        ):
            for format_name, function, *schemes in registered[hook]:
                if format_name in found:
                    registry.failures[f"{name}:{kind}:{format_name}"] = (
                        f"{kind} format {format_name!r} is registered twice: by "
                        f"{owners[kind, format_name]!r} and by {name!r}; kept the first"
                    )
                    continue
                if kind == "export":
                    try:
                        registry.export_schemes[format_name] = _schemes(schemes)
                    except (TypeError, ValueError) as exc:
                        registry.failures[f"{name}:{kind}:{format_name}"] = (
                            f"{kind} format {format_name!r}: {exc}"
                        )
                        continue
                found[format_name] = function
                owners[kind, format_name] = name
    return registry


def _schemes(given: list[Any]) -> frozenset[str]:
    """The quantization schemes an exporter registered (its third argument, if any).

    Raises:
        ValueError: a name that is no scheme of :data:`seq2seq_kit.quantization.SCHEMES`
            (the plugin's registration then fails, with this reason).
    """
    schemes = frozenset(given[0]) if given else frozenset()
    for scheme in sorted(schemes):
        check_scheme(scheme)
    return schemes


@cache
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return build_registry()


def install_hint(name: str) -> str | None:
    """The command that installs backend ``name``, or None when it is not first-party.

    A first-party backend on no package index installs from its folder in the source tree:
    the one the core runs from when there is one (an editable install), else any checkout;
    with the tree's ``constraints.txt``, which pins the frameworks' CPU builds.
    """
    if name not in FIRST_PARTY:
        return None
    dist, where = FIRST_PARTY[name]
    if dist in PUBLISHED:
        return f"pip install {dist}"
    tree = Path(__file__).resolve().parents[1]
    if not (tree / where / "pyproject.toml").is_file():
        return (
            f"pip install -c constraints.txt -e {where}, run in a seq2seq-kit source checkout "
            f"({dist} is on no package index)"
        )
    try:
        shown = tree.relative_to(Path.cwd().resolve())
    except ValueError:
        shown = tree
    return f"pip install -c {shown / 'constraints.txt'} -e {shown / where}"


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        BackendError: naming the installed backends and either the plugin that
            ``SEQ2SEQ_KIT_PLUGINS`` excluded or the command that installs ``name``.
    """
    reg = registry()
    backend = reg.backends.get(name)
    if backend is not None:
        return backend
    installed = ", ".join(sorted(reg.backends)) or "none"
    excluded = [
        ep
        for ep, dist in reg.excluded.items()
        if name in (ep, dist) or dist == FIRST_PARTY.get(name, ("",))[0]
    ]
    if excluded:
        message = (
            f"backend {name!r} is installed but not loaded (loaded: {installed}): "
            f"{ALLOW_ENV}={','.join(sorted(reg.allow or ()))!r} excludes its plugin "
            f"{excluded[0]!r}; add it there or unset {ALLOW_ENV}"
        )
    else:
        command = install_hint(name)
        how = (
            f"install it with: {command}"
            if command
            else "install the package that registers it: pip install PACKAGE"
        )
        message = f"backend {name!r} is not installed (installed: {installed}); {how}"
        note = reg.filter_note()
        if note:
            message += f" ({note})"
    reasons = [f"{k}: {v}" for k, v in reg.failures.items() if name in k or name in v]
    if reasons:
        message += "; plugin errors: " + "; ".join(reasons)
    raise BackendError(message)
