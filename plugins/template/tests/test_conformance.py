"""The seq2seq-kit conformance suite for this backend: ``pytest`` runs every check."""

from seq2seq_kit.testing import BackendSuite


class TestTemplateBackend(BackendSuite):
    backend_name = "template"
    # Checks expected to fail, with the reason (reported as xfail):
    known_failures: dict[str, str] = {}
