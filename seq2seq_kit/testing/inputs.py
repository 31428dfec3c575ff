"""Bad and awkward input, end to end through the backend."""

from __future__ import annotations

import pytest

from ..errors import UnknownTokenError
from .base import BackendTestBase


class InputTests(BackendTestBase):
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
