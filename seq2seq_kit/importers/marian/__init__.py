"""The ``marian`` import format: a Hugging Face ``MarianMTModel`` directory (the OPUS-MT
models) as a Transformer model directory.

The directory holds ``config.json``, ``model.safetensors`` (or its shards with
``model.safetensors.index.json``), ``source.spm``, ``target.spm`` and ``vocab.json``, as
``MarianMTModel.save_pretrained`` and ``MarianTokenizer.save_pretrained`` write them. The
weights are read with :func:`safetensors.numpy.load_file`; a pickle (``pytorch_model.bin``)
is never opened.

What the import maps (transformers 4.57, ``models/marian/modeling_marian.py`` and
``tokenization_marian.py``):

- Marian is a post-norm Transformer (``layer_norm = "post"``), embeddings scaled by
  ``sqrt(d_model)`` (``scale_embedding``), attention ``softmax(q k^T / sqrt(d))`` with the
  query projected (bias included) before scaling, as ours. Its sinusoidal positions put the
  sines in the first half of the features and the cosines in the second
  (``MarianSinusoidalPositionalEmbedding``), counted from 0 on each side: they become a
  stored table that training keeps fixed, ``positions = "table"``
  (:func:`position_table`).
- One vocabulary for both sides (``share_embeddings``), the output projection tied to it
  unless ``tie_word_embeddings`` is false, and ``final_logits_bias`` as
  ``decoder.output.bias``.
- Special ids: Marian has ``</s>`` (EOS), ``<unk>`` and ``<pad>``, and starts decoding from
  the pad id (``decoder_start_token_id``), whose embedding is zero. Ours are PAD, BOS, EOS,
  UNK at 0..3: our BOS is Marian's pad row (its decoder start), EOS and UNK are Marian's,
  and our PAD is a new row with a zero embedding and an output bias of :data:`PAD_BIAS`, so
  that it takes no probability: the log-probabilities of every other id equal Marian's.
  The other pieces follow in Marian's id order. Embedding rows, the output bias and an
  untied output projection are permuted alike.
- Marian's sources end with ``</s>``; ours carry no EOS. The source tokenizer ends every
  source with :data:`SOURCE_END`, our last id: a copy of Marian's EOS row, with the output
  bias :data:`PAD_BIAS` (never an output).
- Tokenization as the model was trained: ``source.spm`` on the source side and
  ``target.spm`` on the target side, each with its own normalisation rules, pieces mapped
  through the joint ``vocab.json``; a leading language code (``>>fr<<``) is one piece, as
  ``MarianTokenizer`` makes it (:class:`MarianSentencePiece`).

Refused by name, never guessed: a config value this mapping cannot express (pre-norm
``normalize_before``, a separate decoder vocabulary, unscaled embeddings, an activation we
lack, dropout inside the feed-forward block or layer drop, both of which change training),
an unknown config key, an unknown weight, a separate target vocabulary file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...checkpoint import Checkpoint
from ...errors import ModelImportError
from ...hookspecs import hookimpl
from ...integrity import file_sha256
from .config import (
    ACTIVATIONS,
    DEFAULTS,
    FIXED_KEYS,
    IGNORED_KEYS,
    READ_KEYS,
    read_config,
    settings_of,
    spec_of,
)
from .files import load_tensors, weight_files
from .tokenizer import SOURCE_END, MarianSentencePiece, make_tokenizer
from .vocabulary import check_tokenizer_files, marian_pieces, our_order, vocabularies
from .weights import PAD_BIAS, canonical_weights, position_table

__all__ = [
    "ACTIVATIONS",
    "DEFAULTS",
    "FIXED_KEYS",
    "FORMAT",
    "IGNORED_KEYS",
    "READ_KEYS",
    "PAD_BIAS",
    "SOURCE_END",
    "MarianSentencePiece",
    "position_table",
    "read_marian",
    "register_importers",
    "register_tokenizers",
]

FORMAT = "marian"


def read_marian(source: Path) -> Checkpoint:
    """The model in Hugging Face ``MarianMTModel`` directory ``source`` as a checkpoint:
    spec, weights (float32, the canonical Transformer layout), both vocabularies (the joint
    ``vocab.json``, ``source.spm`` and ``target.spm``), ``meta["imported"]`` (format,
    directory, SHA-256 of each file read).

    Raises:
        ModelImportError: a missing file (a directory with only ``pytorch_model.bin`` is
            refused with how to get safetensors), malformed JSON, a config key or value
            this import cannot express, weights missing, unexpected or mis-shaped, each
            naming the file and the key.
    """
    if not source.is_dir():
        raise ModelImportError(f"{source}: no such directory")
    weights_read = weight_files(source)
    config_file = source / "config.json"
    config = read_config(config_file)
    check_tokenizer_files(source)
    settings = settings_of(config, config_file)
    pieces = marian_pieces(source / "vocab.json", settings)
    order = our_order(pieces, settings, source / "vocab.json")
    spec = spec_of(settings, len(order) + 1, config_file)
    tensors: dict[str, np.ndarray] = {}
    for file in weights_read:
        tensors.update(load_tensors(file))
    weights = canonical_weights(tensors, spec, settings, order, weights_read[0])
    source_vocab, target_vocab = vocabularies(source, pieces, order)
    read = [config_file, *weights_read, source / "vocab.json"]
    read += [source / "source.spm", source / "target.spm"]
    meta = {
        "imported": {
            "format": FORMAT,
            "from": str(source.resolve()),
            "transformers_version": config.get("transformers_version"),
            "files_sha256": {file.name: file_sha256(file) for file in read},
        }
    }
    max_length = config.get("max_length", 512)
    if type(max_length) is not int or max_length < 1:
        max_length = 512
    return Checkpoint(
        spec,
        source_vocab,
        target_vocab,
        weights,
        max_length=min(max_length, spec.max_positions - 1),
        meta=meta,
    )


@hookimpl
def register_importers(register: Callable[..., None]) -> None:
    register(FORMAT, read_marian)


@hookimpl
def register_tokenizers(register: Callable[..., None]) -> None:
    register("marian", make_tokenizer)
