"""Editing a saved ``model.json`` or ``corpus.json`` and recomputing its fields' digests, as
someone who means to would: the checks behind the digests must still catch the damage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq_kit.integrity import seal


def forge(file: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``file`` with ``fields_sha256`` made to match it."""
    file.write_text(json.dumps(seal(doc, nested="meta" if "meta" in doc else None)))


def as_version_1(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as a model file from before format version 2 holds it: no field digests."""
    return {**{k: v for k, v in doc.items() if k != "fields_sha256"}, "format_version": 1}
