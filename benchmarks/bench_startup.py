"""Start-up: wall time of ``seq2seq-kit backends`` and ``seq2seq-kit --help``.

Each command runs as a fresh subprocess, several times (11; 3 with ``--quick``) after one
untimed run that warms the file cache; the figure is the median wall time in seconds, with
every installed framework present (the plugins are discovered, none may import its
framework for these commands). The command is the console script installed next to the
running interpreter (``<prefix>/bin/seq2seq-kit``), not a shell shim (pyenv's adds ~0.2 s),
falling back to ``python -m seq2seq_kit``.

Reference: ``python -c pass``, the interpreter's own start-up, measured the same way (a
floor no command can beat). Target: <= 0.3 s each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ratio_of, template

COMMANDS = (("backends",), ("--help",))


def command() -> list[str]:
    script = Path(sys.executable).parent / "seq2seq-kit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "seq2seq_kit"]


def _median_seconds(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(runs: int, env: dict[str, str]) -> dict[str, Any]:
    base = command()
    result: dict[str, Any] = {
        "command": " ".join(base),
        "runs": runs,
        "python": _median_seconds([sys.executable, "-c", "pass"], runs, env),
    }
    for args in COMMANDS:
        try:
            result[" ".join(args)] = _median_seconds(base + list(args), runs, env)
        except subprocess.CalledProcessError as exc:
            result[" ".join(args)] = {"error": f"exit status {exc.returncode}"}
    listing = subprocess.run(base + ["backends", "--json"], env=env, capture_output=True)
    result["backends_json"] = listing.stdout.decode(errors="replace")[:2000]
    return result


def rows(m: dict[str, Any], backends: list[str]) -> list[dict[str, Any]]:
    out = []
    who = "all installed: " + ", ".join(backends)
    for args in COMMANDS:
        key = " ".join(args)
        value = m.get(key)
        add = template(f"startup: seq2seq-kit {key}", "s", "python -c pass", "<= 0.3 s")
        if not isinstance(value, float):
            error = value["error"] if isinstance(value, dict) else "not run"
            out.append(add(who, None, m.get("python"), None, False, error))
            continue
        notes = f"median of {m['runs']} runs of {m['command']} {key}"
        out.append(add(who, value, m["python"], ratio_of(value, m["python"]), value <= 0.3, notes))
    return out
