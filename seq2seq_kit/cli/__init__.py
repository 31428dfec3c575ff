"""The ``seq2seq-kit`` command line: train, preprocess, translate, evaluate, plot, info,
average, serve, export, import, backends.

One module per command, each with its sub-parser (``add_COMMAND``) and what it runs
(``run_COMMAND``); the flags derived from the config are in :mod:`.options`.

Imports stay inside the commands so that ``--help`` and ``backends`` load no framework and
little else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .average import add_average
from .backends import add_backends
from .evaluate import add_evaluate
from .export import add_export
from .import_ import add_import
from .info import add_info
from .options import _flag_of, _Parser
from .plot import add_plot
from .preprocess import add_preprocess
from .serve import add_serve
from .train import add_train
from .translate import add_translate


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="seq2seq-kit", description="Pluggable sequence-to-sequence toolkit.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        add_train,
        add_preprocess,
        add_translate,
        add_evaluate,
        add_plot,
        add_info,
        add_average,
        add_serve,
        add_export,
        add_import,
        add_backends,
    ):
        add(sub)
    return p


def _version() -> str:
    from ..version import __version__

    return f"seq2seq-kit {__version__}"


class _Terminated(BaseException):
    """SIGTERM outside training (which handles it itself): unwinds like Ctrl-C."""


#: Whether a SIGTERM is unwinding the command: a second one must not interrupt the report
#: of the first (or of an error being printed when it came) with a traceback.
_terminating = False


def _terminate(signum: int, frame: object) -> None:
    global _terminating
    if not _terminating:
        _terminating = True
        raise _Terminated


def _interrupted(exc: BaseException) -> int:
    name, code = ("SIGINT", 130) if isinstance(exc, KeyboardInterrupt) else ("SIGTERM", 143)
    print(
        f"interrupted by {name}: nothing new was saved; a model directory keeps its last "
        f"complete checkpoint, a corpus folder its last complete version",
        file=sys.stderr,
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    global _terminating
    _terminating = False
    installed = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if installed:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except (KeyboardInterrupt, _Terminated) as exc:  # while an error was being reported
        return _interrupted(exc)
    finally:
        if installed:  # a SIGTERM after the command's end ends the process, as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: Sequence[str] | None) -> int:
    from ..errors import Seq2SeqError, TrainingInterrupted, flags, out_of_memory

    try:
        args = parser().parse_args(argv)
        with flags(_flag_of):  # what an error advises, it advises as flags
            return args.run(args)
    except TrainingInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except Seq2SeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except (KeyboardInterrupt, _Terminated) as exc:
        return _interrupted(exc)
    except Exception as exc:
        # out of memory where no caller named the settings that asked for it
        error = out_of_memory(exc, "the sizes this command was given")
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        if not isinstance(exc, OSError):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
