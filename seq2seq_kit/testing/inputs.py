"""Bad and awkward input: end to end through the backend, and at the model's methods,
where every backend must refuse the same bad arrays with the same message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ..batching import Batch, make_batch
from ..errors import Seq2SeqError, UnknownTokenError
from ..validation import ModelInputError
from .base import BackendTestBase, requires, spec_variants, uses_step

#: The spec of the model-level checks: 11 source ids, 13 target ids.
SRC = np.array([[4, 5, 6], [7, 0, 0]], dtype=np.int32)
LENGTHS = np.array([3, 1], dtype=np.int32)
BATCH = make_batch([[4, 5, 6], [7]], [[4, 5], [6, 7, 8]])  # tgt_in [2, 4]


def _set(array: np.ndarray, index: tuple[int, ...], value: int) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


#: ``encode`` arguments -> the message every backend refuses them with.
BAD_SOURCES = {
    "float ids": (
        (SRC.astype(np.float32), LENGTHS),
        "src_ids must be an integer array, got dtype float32",
    ),
    "ids of rank 1": ((SRC[0], LENGTHS), "src_ids must be 2-D [B, S], got shape (3,)"),
    "id past the vocabulary (in padding)": (
        (_set(SRC, (1, 2), 11), LENGTHS),
        "src_ids[1, 2] = 11 is outside the source vocabulary [0, 11)",
    ),
    "negative id": (
        (_set(SRC, (0, 1), -1), LENGTHS),
        "src_ids[0, 1] = -1 is outside the source vocabulary [0, 11)",
    ),
    "float lengths": (
        (SRC, LENGTHS.astype(np.float64)),
        "src_lengths must be an integer array, got dtype float64",
    ),
    "length longer than S": (
        (SRC, np.array([4, 1], dtype=np.int64)),
        "src_lengths[0] = 4 is outside [0, 3] (the width of src_ids)",
    ),
    "negative length": (
        (SRC, np.array([3, -1], dtype=np.int32)),
        "src_lengths[1] = -1 is outside [0, 3] (the width of src_ids)",
    ),
    "one length for two rows": (
        (SRC, LENGTHS[:1]),
        "src_lengths has shape (1,), expected (2,) (one per row of src_ids)",
    ),
    "lengths of rank 2": (
        (SRC, LENGTHS[:, None]),
        "src_lengths must be 1-D [B], got shape (2, 1)",
    ),
}

#: ``step`` ids for the state of ``encode(SRC, LENGTHS)`` -> the message.
BAD_PREV_IDS = {
    "float ids": (np.array([1.0, 1.0]), "prev_ids must be an integer array, got dtype float64"),
    "ids of rank 2": (
        np.array([[1], [1]], dtype=np.int32),
        "prev_ids must be 1-D [B], got shape (2, 1)",
    ),
    "id past the vocabulary": (
        np.array([1, 13], dtype=np.int32),
        "prev_ids[1] = 13 is outside the target vocabulary [0, 13)",
    ),
    "more ids than state rows": (
        np.array([1, 1, 1], dtype=np.int32),
        "prev_ids has 3 rows but the state has 2",
    ),
}

#: ``reorder`` indices for the state of ``encode(SRC, LENGTHS)`` -> the message.
BAD_INDICES = {
    "float index": (np.array([0.0, 1.0]), "index must be an integer array, got dtype float64"),
    "index of rank 2": (np.array([[0, 1]]), "index must be 1-D [B'], got shape (1, 2)"),
    "negative row": (
        np.array([0, -1]),
        "index[1] = -1 is outside the state's rows [0, 2)",
    ),
    "row past the state": (np.array([2, 0]), "index[0] = 2 is outside the state's rows [0, 2)"),
}

#: Changes to ``BATCH`` -> the message ``train_step``, ``loss``, ``gradients`` and
#: ``log_probs`` all refuse the batch with.
BAD_BATCHES = {
    "float source ids": (
        {"src_ids": BATCH.src_ids.astype(np.float64)},
        "batch.src_ids must be an integer array, got dtype float64",
    ),
    "float source lengths": (
        {"src_lengths": BATCH.src_lengths.astype(np.float32)},
        "batch.src_lengths must be an integer array, got dtype float32",
    ),
    "source length longer than S": (
        {"src_lengths": np.array([3, 4], dtype=np.int64)},
        "batch.src_lengths[1] = 4 is outside [0, 3] (the width of batch.src_ids)",
    ),
    "target input past the vocabulary": (
        {"tgt_in": _set(BATCH.tgt_in, (0, 3), 13)},
        "batch.tgt_in[0, 3] = 13 is outside the target vocabulary [0, 13)",
    ),
    "float target outputs": (
        {"tgt_out": BATCH.tgt_out.astype(np.float32)},
        "batch.tgt_out must be an integer array, got dtype float32",
    ),
    "fewer target rows than sources": (
        {"tgt_in": BATCH.tgt_in[:1]},
        "batch.tgt_in has shape (1, 4), expected (2, 4) (one row per row of batch.src_ids)",
    ),
    "target outputs shorter than inputs": (
        {"tgt_out": BATCH.tgt_out[:, :3]},
        "batch.tgt_out has shape (2, 3), expected (2, 4) (the shape of batch.tgt_in)",
    ),
    "float target lengths": (
        {"tgt_lengths": BATCH.tgt_lengths.astype(np.float32)},
        "batch.tgt_lengths must be an integer array, got dtype float32",
    ),
    "target length longer than T": (
        {"tgt_lengths": np.array([3, 5], dtype=np.int32)},
        "batch.tgt_lengths[1] = 5 is outside [0, 4] (the width of batch.tgt_in)",
    ),
    "mask of another shape": (
        {"tgt_mask": BATCH.tgt_mask[:, :3]},
        "batch.tgt_mask has shape (2, 3), expected (2, 4) (the shape of batch.tgt_in)",
    ),
    "mask covering padding": (
        {"tgt_mask": np.ones((2, 4), dtype=np.float32)},
        "batch.tgt_mask[0] must be 1.0 on the first batch.tgt_lengths[0] = 3 positions and "
        "0.0 after, got [1.0, 1.0, 1.0, 1.0]",
    ),
}

BATCH_METHODS = ("train_step", "loss", "gradients", "log_probs")


class InputTests(BackendTestBase):
    @pytest.fixture(scope="class")
    @classmethod
    def checked_model(cls):
        """A model of the first spec variant (11 source ids, 13 target ids); refused calls
        change nothing, so the checks share it."""
        return cls.backend().create(spec_variants(cls.backend())[0], seed=0)

    @pytest.mark.parametrize("case", BAD_SOURCES)
    def test_encode_refuses_bad_arrays_with_one_message(self, checked_model, case):
        args, message = BAD_SOURCES[case]
        with pytest.raises(ModelInputError) as info:
            checked_model.encode(*args)
        assert str(info.value) == message

    @uses_step
    @pytest.mark.parametrize("case", BAD_PREV_IDS)
    def test_step_refuses_bad_ids_with_one_message(self, checked_model, case):
        prev_ids, message = BAD_PREV_IDS[case]
        state = checked_model.encode(SRC, LENGTHS)
        with pytest.raises(ModelInputError) as info:
            checked_model.step(prev_ids, state)
        assert str(info.value) == message

    @uses_step
    @requires("beam")
    @pytest.mark.parametrize("case", BAD_INDICES)
    def test_reorder_refuses_bad_indices_with_one_message(self, checked_model, case):
        index, message = BAD_INDICES[case]
        state = checked_model.encode(SRC, LENGTHS)
        with pytest.raises(ModelInputError) as info:
            checked_model.reorder(state, index)
        assert str(info.value) == message

    @pytest.mark.parametrize("case", BAD_BATCHES)
    def test_batch_methods_refuse_bad_batches_with_one_message(self, checked_model, case):
        changes, message = BAD_BATCHES[case]
        bad = replace(BATCH, **changes)
        for method in BATCH_METHODS:
            with pytest.raises(ModelInputError) as info:
                getattr(checked_model, method)(bad)
            assert str(info.value) == message, method

    def test_bad_input_is_a_value_error_the_cli_reports(self, checked_model):
        with pytest.raises(ModelInputError) as info:
            checked_model.loss((BATCH.src_ids, BATCH.tgt_in))
        assert isinstance(info.value, ValueError) and isinstance(info.value, Seq2SeqError)
        assert info.value.argument == "batch"
        assert str(info.value).startswith("batch must be a seq2seq_kit.batching.Batch")

    @requires("train")
    def test_refused_train_step_changes_nothing(self):
        model = self.build(spec_variants(self.backend())[0])
        before = model.get_weights()
        loss = model.loss(BATCH)
        with pytest.raises(ModelInputError):
            model.train_step(replace(BATCH, tgt_in=_set(BATCH.tgt_in, (1, 1), 99)))
        for name, value in model.get_weights().items():
            np.testing.assert_array_equal(value, before[name], err_msg=name)
        assert model.loss(BATCH) == loss

    @uses_step
    def test_any_integer_dtype_and_layout_is_accepted(self, checked_model):
        """Ids, lengths and indices of any integer dtype, not contiguous, give what int32
        gives: the core converts them before the backend sees them."""
        expected = checked_model.step(
            np.array([1, 4], dtype=np.int32), checked_model.encode(SRC, LENGTHS)
        )[0]
        wide = np.asfortranarray(np.hstack([SRC, SRC]).astype(np.int64))[:, :3]
        state = checked_model.encode(wide, LENGTHS.astype(np.uint8))
        got = checked_model.step(np.array([[1, 0], [4, 0]], dtype=np.int16)[:, 0], state)[0]
        np.testing.assert_array_equal(got, expected)
        converted = Batch(
            src_ids=BATCH.src_ids.astype(np.int64),
            src_lengths=BATCH.src_lengths.astype(np.int64),
            tgt_in=BATCH.tgt_in.astype(np.int64),
            tgt_out=np.asfortranarray(BATCH.tgt_out.astype(np.uint16)),
            tgt_lengths=BATCH.tgt_lengths.astype(np.int64),
            tgt_mask=BATCH.tgt_mask.astype(bool),
        )
        assert checked_model.loss(converted) == checked_model.loss(BATCH)
        np.testing.assert_array_equal(
            checked_model.log_probs(converted), checked_model.log_probs(BATCH)
        )

    @pytest.mark.parametrize("text,char,position", [("0", "0", 1), ("1a", "a", 2)])
    def test_unseen_character_is_named(self, digits_model, text, char, position):
        translator, _ = digits_model
        with pytest.raises(UnknownTokenError) as info:
            translator.translate(["5", text])
        assert info.value.token == char and info.value.position == position
        assert info.value.line == 2
        assert f"{char!r}" in str(info.value)

    def test_unseen_character_replaced_on_request(self, digits_model):
        translator, _ = digits_model
        out = translator.translate(["1a", "3"], unknown="replace")
        assert len(out) == 2 and out[1] == "three"
        assert "<unk>" not in out[0]

    def test_empty_lines_keep_alignment(self, digits_model):
        translator, _ = digits_model
        assert translator.translate(["", "3", "  ", "9", ""]) == ["", "three", "", "nine", ""]
        assert translator.translate([""]) == [""]
        assert translator.translate([]) == []

    def test_input_far_longer_than_training(self, digits_model):
        translator, _ = digits_model
        long = "123456789" * 60  # 540 characters; training sources had 1
        hyps = translator.hypotheses([long, "4"], max_length=30)
        assert len(hyps[0][0].ids) <= 30
        assert hyps[1][0].text == "four"
