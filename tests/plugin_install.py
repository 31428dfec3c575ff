"""Installing a plugin distribution the way a user would, for tests: pip into a private
folder put on PYTHONPATH, so the test environment itself is left as it was."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: The oldest setuptools that builds our distributions: an SPDX ``license`` string (PEP 639)
#: needs 77, as their pyproject.toml files require.
SETUPTOOLS = (77,)


def setuptools_builds_offline() -> bool:
    """Whether the installed setuptools can build our distributions without an index
    (``--no-build-isolation``); an older one (a stdlib venv's) would fail to."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return False
    return (major,) >= SETUPTOOLS


def install(package: Path, site: Path, **env: str) -> dict[str, str]:
    """pip-install ``package`` into ``site``; returns the environment that sees it."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(site),
        str(package),
    ]
    if setuptools_builds_offline():
        command.insert(4, "--no-build-isolation")  # no index round trip for setuptools
    subprocess.run(command, check=True, capture_output=True)
    inherited = {k: v for k, v in os.environ.items() if k != "SEQ2SEQ_KIT_PLUGINS"}
    return {**inherited, "PYTHONPATH": str(site), **env}


def listed_backends(env: dict[str, str]) -> dict[str, str]:
    """``seq2seq-kit backends`` in ``env``: backend name -> its whole output row."""
    out = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return {line.split()[0]: line for line in out.splitlines() if line and " " in line}


def run_pytest(target: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=target if target.is_dir() else target.parent,
    )
