"""A backend written outside this repository registers and passes the conformance suite
with no change to the core: build a throwaway distribution, pip-install it, run the suite.
It gets the core's input checks without a line of its own."""

import copy
import textwrap
from dataclasses import replace

import numpy as np
import pytest
from plugin_install import install, listed_backends, run_pytest

from seq2seq_kit.backend import Backend, Model
from seq2seq_kit.batching import make_batch
from seq2seq_kit.plugins import get_backend
from seq2seq_kit.spec import ModelSpec
from seq2seq_kit.validation import CheckedModel, ModelInputError

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "seq2seq-kit-wrapped"
version = "0.3.1"
dependencies = []

[project.entry-points.seq2seq_kit]
wrapped = "s2s_wrapped"
"""

PLUGIN = '''
"""A third-party backend: the NumPy model behind another name, declaring only "train"."""
from seq2seq_kit import hookimpl
from seq2seq_kit.backend import Backend


def build(spec, *, seed, optimizer):
    from seq2seq_kit.plugins import get_backend

    return get_backend("numpy").build(spec, seed=seed, optimizer=optimizer)


@hookimpl
def register_backends(register):
    register(Backend(name="wrapped", version="0.3.1", capabilities=frozenset({"train"}),
                     build=build))
'''

SUITE = """
from seq2seq_kit.testing import BackendSuite


class TestWrapped(BackendSuite):
    backend_name = "wrapped"
"""


def test_throwaway_backend_registers_and_passes_the_suite(tmp_path):
    package = tmp_path / "wrapped"
    (package / "s2s_wrapped").mkdir(parents=True)
    (package / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "s2s_wrapped" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    env = install(package, tmp_path / "site")
    row = listed_backends(env)["wrapped"]
    assert "0.3.1" in row and "seq2seq-kit-wrapped" in row

    (tmp_path / "test_wrapped.py").write_text(SUITE)
    result = run_pytest(tmp_path / "test_wrapped.py", env, "-rA")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # the core's input checks apply to a backend that has none of its own
    assert "PASSED test_wrapped.py::TestWrapped::test_encode_refuses_bad_arrays" in result.stdout
    # undeclared capabilities are skipped, not failed
    assert "lacks ['beam']" in result.stdout


class BareModel:
    """A third party's model that checks nothing and records what reaches it."""

    def __init__(self, spec):
        self.spec = spec
        self.calls = []

    def encode(self, src_ids, src_lengths):
        self.calls.append(("encode", src_ids, src_lengths))
        return ("state", src_ids.shape[0])

    def step(self, prev_ids, state):
        self.calls.append(("step", prev_ids, state))
        return np.zeros((prev_ids.shape[0], self.spec.tgt_vocab_size), np.float32), state

    def reorder(self, state, index):
        self.calls.append(("reorder", index, state))
        return ("state", index.shape[0])

    def attention(self, state):
        return None

    def loss(self, batch):
        self.calls.append(("loss", batch))
        return 0.0

    def train_step(self, batch):
        self.calls.append(("train_step", batch))
        return 0.0

    def gradients(self, batch):
        return {}

    def log_probs(self, batch):
        return np.zeros((*batch.tgt_in.shape, self.spec.tgt_vocab_size), np.float32)

    def set_learning_rate(self, learning_rate):
        self.learning_rate = learning_rate

    def optimizer_state(self):
        return {}

    def set_optimizer_state(self, state):
        pass

    def get_weights(self):
        return {}

    def set_weights(self, weights):
        pass


def bare_backend(build=None) -> Backend:
    return Backend(
        name="bare",
        version="1.0",
        capabilities=frozenset({"train", "beam"}),
        build=build or (lambda spec, *, seed, optimizer: BareModel(spec)),
    )


SPEC = ModelSpec(11, 13, hidden_size=4)


def test_a_backend_that_checks_nothing_gets_the_core_checks():
    model = bare_backend().create(SPEC)
    inner = model.__wrapped__
    assert isinstance(inner, BareModel) and isinstance(model, Model)
    with pytest.raises(ModelInputError, match=r"src_lengths must be an integer array"):
        model.encode(np.array([[4, 5]]), np.array([2.0]))
    with pytest.raises(ModelInputError, match=r"batch.tgt_in\[0, 1\] = 20 is outside"):
        model.train_step(make_batch([[4]], [[20]]))
    assert inner.calls == []  # bad input never reached the backend


def test_the_backend_receives_what_the_contract_guarantees():
    model = bare_backend().create(SPEC)
    inner = model.__wrapped__
    wide = np.asfortranarray(np.array([[4, 5, 6, 0], [7, 8, 0, 0]], dtype=np.int64))[:, :3]
    state = model.encode(wide, [3, 2])
    _, state = model.step(np.array([1, 1], dtype=np.uint8), state)
    model.reorder(state, np.array([1, 1, 0], dtype=np.int32))
    batch = make_batch([[4]], [[5, 6]])
    model.loss(replace(batch, tgt_in=batch.tgt_in.astype(np.int64), tgt_mask=batch.tgt_mask > 0))
    (_, ids, lengths), (_, prev, _), (_, index, _), (_, got) = inner.calls
    for array, dtype in [(ids, np.int32), (lengths, np.int32), (prev, np.int32)]:
        assert array.dtype == dtype and array.flags.c_contiguous
    assert index.dtype == np.int64 and index.tolist() == [1, 1, 0]
    assert ids.tolist() == [[4, 5, 6], [7, 8, 0]] and lengths.tolist() == [3, 2]
    assert got.tgt_in.dtype == np.int32 and got.tgt_mask.dtype == np.float32
    np.testing.assert_array_equal(got.tgt_mask, batch.tgt_mask)
    model.loss(batch)
    assert inner.calls[-1][1] is batch  # already in shape: passed on without a copy


def test_step_and_reorder_are_checked_against_the_state_rows():
    model = bare_backend().create(SPEC)
    state = model.encode(np.array([[4], [5]]), np.array([1, 1]))
    with pytest.raises(ModelInputError, match="prev_ids has 1 rows but the state has 2"):
        model.step(np.array([1]), state)
    picked = model.reorder(state, np.array([0, 1, 1]))
    with pytest.raises(ModelInputError, match=r"index\[0\] = 3 is outside .* \[0, 3\)"):
        model.reorder(picked, np.array([3]))


def test_the_checked_model_reads_and_writes_through():
    model = bare_backend().create(SPEC)
    assert model.spec is SPEC and model.calls is model.__wrapped__.calls
    model.set_learning_rate(0.5)
    model.note = "x"
    assert model.__wrapped__.learning_rate == 0.5 and model.__wrapped__.note == "x"
    with pytest.raises(AttributeError):
        model.no_such_attribute  # noqa: B018
    copied = copy.deepcopy(model)
    assert isinstance(copied.__wrapped__, BareModel) and copied.__wrapped__ is not model.__wrapped__


def test_a_model_built_from_another_backend_is_checked_once():
    numpy = get_backend("numpy")
    model = bare_backend(lambda spec, *, seed, optimizer: numpy.create(spec, seed=seed)).create(
        SPEC
    )
    assert not isinstance(model.__wrapped__, CheckedModel)
