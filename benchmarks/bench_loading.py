"""Peak memory of loading ``--limit 3`` pairs from a large TSV file against a tiny one.

A generated ``source<TAB>target<TAB>attribution`` file of ``loading_mb`` MB (300; 30 with
``--quick``) is written to the run's work folder, and a 10-row file next to it. Each
measurement is a fresh subprocess (``_common.call``) that imports seq2seq_kit and calls
``seq2seq_kit.data.load_dataset(path, 3)``, as ``train --data PATH --limit 3`` does.

Figure: the child's peak RSS (``ru_maxrss`` of that child, see ``_common.Outcome``) in MB
(10^6 bytes) with the large file. Reference: the same with the 10-row file. Target: the
large file costs at most 10 MB more: reading stops once the pairs are kept, so memory
grows with the pairs kept, not with the file. The notes give each child's wall time
(start-up and imports included) and the file size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import WORK, call, ratio_of, template

BENCHMARK = "peak RSS loading --limit 3 pairs, large vs 10-row TSV"
LIMIT = 3
TINY_ROWS = 10
ROW = "Tom didn't know what to say.\tTom ne savait pas quoi dire.\tCC-BY 2.0 (France)\n"


def write_tsv(path: Path, megabytes: float) -> int:
    """Write rows of :data:`ROW` (numbered, so that no two are equal) until ``megabytes``
    MB; returns the file's size in bytes."""
    block = "".join(f"{i} {ROW}" for i in range(10_000)).encode()
    with open(path, "wb") as f:
        while f.tell() < megabytes * 1e6:
            f.write(block)
        return f.tell()


def child(path: str, limit: int) -> dict[str, Any]:
    """Runs in its own process; see the module docstring."""
    import resource
    import time

    from seq2seq_kit.data import load_dataset

    start = time.perf_counter()
    dataset = load_dataset(path, limit)
    return {
        "pairs": len(dataset.pairs),
        "load_seconds": time.perf_counter() - start,
        "self_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def run(sizes: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Write the two files, load each in a child, delete the files; returns the results
    by file (``large``, ``tiny``) or ``{"error": ...}``."""
    WORK.mkdir(parents=True, exist_ok=True)
    files = {"large": WORK / "loading-large.tsv", "tiny": WORK / "loading-tiny.tsv"}
    measured: dict[str, Any] = {}
    try:
        write_tsv(files["large"], sizes["loading_mb"])
        files["tiny"].write_text(ROW * TINY_ROWS)
        for name, path in files.items():
            outcome = call(
                "bench_loading",
                "child",
                env=env,
                timeout=sizes["timeout"],
                tag=name,
                path=str(path),
                limit=LIMIT,
            )
            if outcome.error:
                return {"error": outcome.error}
            measured[name] = {
                **outcome.value["result"],
                "bytes": path.stat().st_size,
                "peak_mb": outcome.peak_rss_mb,
                "seconds": outcome.seconds,
            }
            print(f"  loading {name} file: peak {outcome.peak_rss_mb:.0f} MB", flush=True)
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
    return measured


def rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    add = template(BENCHMARK, "MB", f"same, {TINY_ROWS}-row file", "<= reference + 10 MB")
    who = "core (no backend)"
    if "error" in m:
        return [add(who, None, None, None, False, m["error"])]
    large, tiny = m["large"], m["tiny"]
    met = large["peak_mb"] <= tiny["peak_mb"] + 10 and large["pairs"] == LIMIT
    notes = (
        f"{large['bytes'] / 1e6:.0f} MB file: {large['pairs']} pairs, "
        f"child {large['seconds']:.2f} s; {TINY_ROWS}-row file: child {tiny['seconds']:.2f} s"
    )
    return [
        add(
            who,
            large["peak_mb"],
            tiny["peak_mb"],
            ratio_of(large["peak_mb"], tiny["peak_mb"]),
            met,
            notes,
        )
    ]
