"""``seq2seq-kit serve``: serve models over HTTP."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .options import _add_config_flags, _add_quantization, _file_and_flags, _validated


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over HTTP: a JSON translation API and a web page",
        description="Loads each model once and serves GET /healthz, GET /v1/models, "
        "POST /v1/translate and a web page at /, until SIGTERM or Ctrl-C (exit 0); SIGHUP "
        "(and, with --allow-reload, POST /v1/models/NAME/reload) loads the model "
        "directories again as they are on disk, keeping a model whose directory does not "
        "load. Every "
        "flag but --model, --backend, --quantization and --config sets the [serve] key it "
        "names. Needs the "
        "serve extra: pip install 'seq2seq-kit[serve]'.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="model directory; repeat as NAME=DIR to serve several (one plain DIR is named "
        "'default'); a request without \"model\" gets the first. DIR+DIR+...: an ensemble "
        "of those models, with equal weights (log-probabilities averaged at every step; "
        "served as loaded: SIGHUP and reloads leave it as it is)",
    )
    p.add_argument("--backend", help="backend to run the models with")
    _add_quantization(
        p,
        "run every model quantized to this scheme from its float32 weights (default: "
        "float32), with a backend that runs it (ctranslate2: every scheme its device runs; "
        "onnx: int8; others refuse, exit status 2); reloads keep it",
    )
    p.add_argument("--config", help="TOML config file; its [serve] table is read")
    _add_config_flags(p, "serve")
    p.set_defaults(run=run_serve)


def _model_dirs(values: Sequence[str]) -> dict[str, str]:
    """``--model`` values as name -> directory: ``NAME=DIR``, or one plain ``DIR`` named
    ``default``.

    Raises:
        ConfigError: a name given twice, or several directories not all named.
    """
    import os
    import re

    from ..errors import ConfigError

    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or os.path.isdir(value):
            if len(values) > 1:
                raise ConfigError(
                    f"--model {value}: with several models, name each: --model NAME=DIR"
                )
            name, path = "default", value
        if not path.strip():
            raise ConfigError(f"--model {value}: empty directory")
        if name in named:
            raise ConfigError(f"--model {value}: the name {name!r} is given twice")
        named[name] = path
    return named


def _members(path: str) -> list[str] | None:
    """The directories of an ensemble ``DIR+DIR+...``; None for one model (a directory
    whose own name holds a ``+`` is one model).

    Raises:
        ConfigError: an empty directory between the ``+``.
    """
    import os

    from ..errors import ConfigError

    if "+" not in path or os.path.isdir(path):
        return None
    members = path.split("+")
    if not all(m.strip() for m in members):
        raise ConfigError(f"--model {path}: an empty directory in an ensemble DIR+DIR")
    return members


def run_serve(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"serve needs Starlette and uvicorn ({exc}): pip install 'seq2seq-kit[serve]'"
        ) from None
    settings = _validated(*_file_and_flags(args), args.config).serve
    from ..api import load_ensemble
    from ..serving.models import load_served
    from ..serving.runtime import run

    models, sources = {}, {}
    for name, path in _model_dirs(args.model).items():
        members = _members(path)
        if members is None:
            models[name] = load_served(path, args.backend, args.quantization)
            sources[name] = path
        else:  # reloading is one directory's: an ensemble is served as given
            models[name] = load_ensemble(
                members, backends=args.backend, quantization=args.quantization
            )
    return run(models, settings, sources)
