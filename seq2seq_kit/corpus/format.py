"""The corpus's on-disk format, shared by its reader and its writer: the names of its files,
the ``.idx`` header, the version and the ``[data]`` keys a corpus fixes."""

from __future__ import annotations

from ..config import DataConfig
from ..integrity import DIGESTS

__all__ = [
    "CORPUS_FILE",
    "CORPUS_KEYS",
    "DIGESTS",
    "FORMAT",
    "FORMAT_VERSION",
    "IDX_HEADER",
    "IDX_MAGIC",
    "SIDES",
    "SPLITS",
]

FORMAT = "seq2seq-kit-corpus"
#: 2: ``fields_sha256`` covers every field of ``corpus.json``.
FORMAT_VERSION = 2
CORPUS_FILE = "corpus.json"
SPLITS = ("train", "valid")
SIDES = ("source", "target")
IDX_MAGIC = b"S2SKIDX1"
#: Bytes before the offsets of a ``.idx`` file: the magic and the row count.
IDX_HEADER = len(IDX_MAGIC) + 8
#: ``[data]`` keys the corpus was made with; a training run may not set them otherwise.
CORPUS_KEYS = tuple(k for k in DataConfig.model_fields if k != "source")
