"""The binarized corpus: training data tokenized once into memory-mapped id arrays.

``seq2seq-kit preprocess`` (:func:`preprocess`) reads the ``[data]`` a training run would
read (source, valid or valid_fraction, limit, tokenizers, shared_vocabulary, the length
caps), splits it as training does, trains the tokenizers, builds the vocabularies and
writes, per split (``train``, ``valid``) and side (``source``, ``target``), the layout of
fairseq's ``MMapIndexedDataset``:

- ``SPLIT.SIDE.bin``: every row's ids back to back, one flat array of ``uint16`` (when the
  side's vocabulary has at most 65,536 ids) or ``int32``;
- ``SPLIT.SIDE.idx``: the 8-byte magic ``S2SKIDX1``, the row count ``n`` as a little-endian
  ``uint64``, ``n + 1`` ``int64`` offsets (in ids) into the ``.bin``, then ``n`` ``int32``
  row lengths;
- the tokenizers' files (``source-*``, ``target-*``, as in a model directory) and
  ``corpus.json``: format and version, the data config it was made with, row counts,
  dtypes, both vocabularies, the SHA-256 of every file and, in ``fields_sha256``, of each
  of its own fields.

``[data] source = "DIR"`` trains from it (:func:`training_data`): the corpus's vocabularies
and split, rows read through :class:`TokenArrays` (a row is a slice of the memory map, read
when a batch needs it), so a run holds an epoch's index permutation (8 bytes a pair) and
its batches, not the corpus. The corpus is written into a hidden staging folder inside
``DIR`` and its files are moved into place once all are complete
(:mod:`seq2seq_kit.atomic`): an interrupted preprocess leaves the old corpus or the new
one, and ``DIR`` may be a mount point.
"""

from .format import CORPUS_FILE, CORPUS_KEYS, FORMAT, FORMAT_VERSION, SIDES, SPLITS
from .reader import (
    Corpus,
    DecodedPairs,
    TokenArrays,
    TrainingData,
    is_corpus,
    names_corpus,
    open_corpus,
    training_data,
)
from .writer import SAMPLE_PAIRS, preprocess

__all__ = [
    "CORPUS_FILE",
    "CORPUS_KEYS",
    "FORMAT",
    "FORMAT_VERSION",
    "SAMPLE_PAIRS",
    "SIDES",
    "SPLITS",
    "Corpus",
    "DecodedPairs",
    "TokenArrays",
    "TrainingData",
    "is_corpus",
    "names_corpus",
    "open_corpus",
    "preprocess",
    "training_data",
]
