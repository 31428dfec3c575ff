"""The default intra-op thread count (``[train] threads = 0``): OMP_NUM_THREADS when set,
else the cores that no other process is running on now."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from seq2seq_kit import runtime
from seq2seq_kit.runtime import busy_elsewhere, resolve_threads, usable_cores


def test_configured_threads_win():
    assert resolve_threads(3, 2, environ={"OMP_NUM_THREADS": "1"}) == 3


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("5", 5), ("4,2", 4)])
def test_omp_num_threads_is_the_default_when_set(value, expected):
    assert resolve_threads(0, environ={"OMP_NUM_THREADS": value}) == expected


# the last two: more threads than any framework creates (they crash trying)
@pytest.mark.parametrize("value", ["", "many", "0", "100000", "99999999999999999999"])
def test_a_useless_omp_num_threads_is_ignored(value, monkeypatch):
    monkeypatch.setattr(runtime, "busy_elsewhere", lambda: 0)
    assert resolve_threads(0, environ={"OMP_NUM_THREADS": value}) == usable_cores()


@pytest.mark.parametrize("busy", [0, 1, 5, 1000])
@pytest.mark.parametrize("local", [1, 2])
def test_default_is_the_idle_cores_shared_by_the_local_processes(busy, local, monkeypatch):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 8)
    monkeypatch.setattr(runtime, "busy_elsewhere", lambda: busy)
    expected = max(1, min(8 // local, 8 - busy))
    assert resolve_threads(0, local, environ={}) == expected


def test_a_process_burning_a_core_is_seen():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # until it runs
        assert busy_elsewhere() >= 1
        assert resolve_threads(0, environ={}) <= max(1, usable_cores() - 1)
    finally:
        burner.kill()
        burner.wait()
