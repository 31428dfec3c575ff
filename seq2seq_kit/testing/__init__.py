"""The backend conformance suite, for our backends and third parties' alike.

Usage, in a test module of a backend plugin::

    from seq2seq_kit.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        backend_name = "mybackend"
        known_failures = {"test_gradients_match_reference": "float16 accumulators"}

then run ``pytest``. Checks that need a capability the backend does not declare are skipped
(those that train or take gradients need ``train``: an inference-only backend runs every
decoding check, on weights given through ``set_weights``);
``known_failures`` are reported as (strict) xfail. Agreement checks compare against the
NumPy reference backend (``seq2seq-kit-numpy``), which must be installed too. The classes
per concern (``RegistrationTests``, ``NumericsTests``, ...) can be used one by one, as
pandas' extension tests are.
"""

from .base import BackendTestBase, requires, uses_step
from .checkpoints import CheckpointTests
from .decoding import DecodingTests
from .ensembles import EnsembleTests
from .features import FeatureTests
from .inputs import InputTests
from .numerics import NumericsTests
from .quantized import QuantizedTests
from .registration import RegistrationTests
from .search_options import SearchOptionTests
from .training import TrainingTests

__all__ = [
    "BackendSuite",
    "BackendTestBase",
    "CheckpointTests",
    "DecodingTests",
    "EnsembleTests",
    "FeatureTests",
    "InputTests",
    "NumericsTests",
    "QuantizedTests",
    "RegistrationTests",
    "SearchOptionTests",
    "TrainingTests",
    "requires",
    "uses_step",
]


class BackendSuite(
    RegistrationTests,
    NumericsTests,
    TrainingTests,
    DecodingTests,
    SearchOptionTests,
    EnsembleTests,
    FeatureTests,
    CheckpointTests,
    InputTests,
    QuantizedTests,
):
    """Every conformance check; subclass it and set ``backend_name``."""
