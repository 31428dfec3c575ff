"""Discovery through entry points, metadata, and cheap registration."""

from __future__ import annotations

import json
import subprocess
import sys

from ..backend import KNOWN_CAPABILITIES
from ..plugins import registry
from .base import BackendTestBase

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax")


class RegistrationTests(BackendTestBase):
    def test_registered_through_entry_point(self):
        backend = self.backend()
        assert backend.name == self.backend_name
        assert backend.distribution, "the core fills in the distribution that registered it"
        assert self.backend_name not in registry().failures

    def test_metadata(self):
        backend = self.backend()
        assert isinstance(backend.version, str) and backend.version
        assert isinstance(backend.capabilities, frozenset)
        # an inference-only backend runs its own search (``search``) instead of training
        assert "train" in backend.capabilities or "search" in backend.capabilities
        unknown = backend.capabilities - KNOWN_CAPABILITIES
        assert all(isinstance(c, str) and c for c in unknown)
        assert callable(backend.build)

    def test_registration_imports_no_framework(self):
        code = (
            "import sys, json\n"
            "from seq2seq_kit.plugins import registry\n"
            f"reg = registry(); assert {self.backend_name!r} in reg.backends, reg.failures\n"
            f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == []
