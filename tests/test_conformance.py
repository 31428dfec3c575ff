"""The conformance suite, run for every installed backend."""

import pytest

from seq2seq_kit.plugins import registry
from seq2seq_kit.testing import BackendSuite

INSTALLED = sorted(registry().backends)


def _suite(name: str) -> type:
    return type(f"Test{name.title()}Backend", (BackendSuite,), {"backend_name": name})


for _name in INSTALLED:
    globals()[f"Test{_name.title()}Backend"] = _suite(_name)


def test_some_backend_is_installed():
    if not INSTALLED:
        pytest.fail(f"no backend installed; plugin errors: {registry().failures}")
