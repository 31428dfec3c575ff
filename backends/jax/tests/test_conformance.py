"""The seq2seq-kit conformance suite, run against the JAX backend."""

from seq2seq_kit.testing import BackendSuite


class TestJax(BackendSuite):
    backend_name = "jax"
