"""plugins/template, copied and renamed as its README says, installs, is listed by
`seq2seq-kit backends`, and passes the suite's registration checks."""

import shutil
from pathlib import Path

from plugin_install import install, listed_backends, run_pytest

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
    env = install(package, tmp_path / "site")
    row = listed_backends(env)["acme"]
    assert "seq2seq-kit-acme" in row and "train" in row

    result = run_pytest(
        package / "tests" / "test_conformance.py",
        env,
        "-k",
        "Registration or registered or metadata or registration",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
