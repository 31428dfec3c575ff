"""plugins/template, copied and renamed as its README says, installs, is listed by
`seq2seq-kit backends`, and passes the suite's registration checks."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "plugins" / "template"


def copy_renamed(dest: Path, name: str) -> Path:
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for path in sorted(dest.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            text = path.read_text()
            path.write_text(text.replace("template", name).replace("Template", name.title()))
        if "template" in path.name:
            path.rename(path.with_name(path.name.replace("template", name)))
    return dest


def test_copied_template_registers_and_passes_registration_checks(tmp_path):
    package = copy_renamed(tmp_path / "my-backend", "acme")
    assert (package / "seq2seq_kit_acme" / "model.py").exists()
    site = tmp_path / "site"
    install = [
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
    if importlib.util.find_spec("setuptools") is not None:
        install.insert(4, "--no-build-isolation")
    subprocess.run(install, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}

    listing = subprocess.run(
        [sys.executable, "-m", "seq2seq_kit", "backends"],
        capture_output=True,
        text=True,
        env=env,
    )
    row = next(line for line in listing.stdout.splitlines() if line.startswith("acme"))
    assert "seq2seq-kit-acme" in row and "train" in row

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "Registration or registered or metadata or registration",
            str(package / "tests" / "test_conformance.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=package,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
