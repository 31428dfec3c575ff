"""Subprocess entry of the performance suite: ``python _worker.py MODULE FUNCTION ARGS OUT``.

Imports ``MODULE`` from benchmarks/, calls ``FUNCTION(**json(ARGS))`` and writes
``{"result": ..., "threads": ...}`` as JSON to OUT (``threads``: what the process used, see
``_common.thread_info``, taken after the function ran, when its frameworks are loaded).
Started by ``_common.call``; not meant to be run by hand.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import thread_info  # noqa: E402


def main() -> None:
    module, function, args_path, out_path = sys.argv[1:5]
    kwargs = json.loads(Path(args_path).read_text())
    result = getattr(importlib.import_module(module), function)(**kwargs)
    Path(out_path).write_text(json.dumps({"result": result, "threads": thread_info()}))


if __name__ == "__main__":
    main()
