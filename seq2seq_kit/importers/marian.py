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
  stored table, ``positions = "learned"`` (:func:`position_table`).
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

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..architectures.transformer import TransformerSpec
from ..batch import SPECIALS
from ..checkpoint import Checkpoint
from ..errors import ModelImportError
from ..hookspecs import hookimpl
from ..integrity import file_sha256
from ..vocab import Vocabulary

FORMAT = "marian"
#: The piece that ends every source, standing for Marian's ``</s>`` there
#: (:class:`MarianSentencePiece`): the last id of the vocabulary.
SOURCE_END = "<source-end>"
#: The output bias of our PAD id, which Marian lacks: far below any logit, so its
#: probability underflows to 0 and the other ids keep Marian's log-probabilities.
PAD_BIAS = -1e9
#: Marian's activation names -> ours (transformers' ACT2FN: "swish" and "silu" are one).
ACTIVATIONS = {"swish": "swish", "silu": "swish", "gelu": "gelu", "relu": "relu"}
#: Config keys that do not change what the model computes: bookkeeping, labels, and
#: generation defaults (decoding options are ours, given at translate time).
IGNORED_KEYS = frozenset(
    {
        "_name_or_path",
        "_num_labels",
        "architectures",
        "bad_words_ids",
        "bos_token_id",
        "classif_dropout",
        "classifier_dropout",
        "diversity_penalty",
        "do_sample",
        "dtype",
        "early_stopping",
        "extra_pos_embeddings",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "gradient_checkpointing",
        "id2label",
        "init_std",
        "label2id",
        "length_penalty",
        "max_length",
        "min_length",
        "model_type",
        "no_repeat_ngram_size",
        "num_beams",
        "num_hidden_layers",
        "num_labels",
        "num_return_sequences",
        "output_past",
        "repetition_penalty",
        "temperature",
        "top_k",
        "top_p",
        "torch_dtype",
        "transformers_version",
        "use_cache",
        # a BART option older Marian configs carry; modeling_marian always adds
        # final_logits_bias, whatever its value
        "add_bias_logits",
    }
)
#: Keys older Marian configs carry from BART, which modeling_marian no longer reads; any
#: other value than this one means weights converted for another model.
FIXED_KEYS = {
    "normalize_before": False,
    "normalize_embedding": False,
    "add_final_layer_norm": False,
    "static_position_embeddings": True,
    "scale_embedding": True,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
    "activation_dropout": 0.0,
    "share_encoder_decoder_embeddings": True,
    "is_encoder_decoder": True,
}
#: Keys read into the spec or the vocabulary.
READ_KEYS = frozenset(
    {
        "vocab_size",
        "decoder_vocab_size",
        "max_position_embeddings",
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "encoder_attention_heads",
        "decoder_attention_heads",
        "encoder_ffn_dim",
        "decoder_ffn_dim",
        "activation_function",
        "dropout",
        "attention_dropout",
        "tie_word_embeddings",
        "pad_token_id",
        "eos_token_id",
        "decoder_start_token_id",
    }
)
#: Transformers' defaults (MarianConfig.__init__, PretrainedConfig) for keys a config may omit.
DEFAULTS: dict[str, Any] = {
    "decoder_vocab_size": None,
    "max_position_embeddings": 1024,
    "activation_function": "gelu",
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "tie_word_embeddings": True,
    "scale_embedding": False,
    "share_encoder_decoder_embeddings": True,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
}
#: Our name of each Marian layer part (HF attribute -> canonical name).
_ATTENTION = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "output"}
_NORMS = {
    "self_attn_layer_norm": "self_attention_norm",
    "encoder_attn_layer_norm": "cross_attention_norm",
    "final_layer_norm": "feed_forward_norm",
}


def position_table(count: int, width: int) -> np.ndarray:
    """float32 [count, width]: Marian's sinusoidal positions
    (``MarianSinusoidalPositionalEmbedding._init_weight`` in modeling_marian.py): angle
    ``t / 10000^(2 * (j // 2) / width)`` for feature ``j``; the sines of the even ``j`` fill
    the first ``ceil(width / 2)`` features, the cosines of the odd ones the rest. Computed
    in float64 and rounded once, as there.

    The one place that says how Marian's positions are stored: as our learned table."""
    j = np.arange(width)
    angles = np.arange(count, dtype=np.float64)[:, None] / np.power(10000, 2 * (j // 2) / width)
    return np.concatenate([np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])], axis=1).astype(
        np.float32
    )


class MarianSentencePiece:
    """A trained SentencePiece model used as it came (``source.spm`` or ``target.spm``): its
    own normalisation rules, no training. As ``MarianTokenizer._tokenize``: a text starting
    with a language code ``>>xx<<`` gives that code as its first piece, the rest is
    SentencePiece's pieces of the remainder. On the source side (``source_end``) the pieces
    end with :data:`SOURCE_END`, as Marian's sources end with ``</s>``
    (``MarianTokenizer.build_inputs_with_special_tokens``); our sources carry no EOS, so the
    mark is a piece of its own, Marian's EOS row under another id. Decoding drops it and
    joins the other pieces with SentencePiece.

    Registered as tokenizer ``marian`` (options: ``{"source_end": true}`` on the source
    side, ``{}`` on the target side); saved as ``{prefix}sentencepiece.model`` in the model
    directory, under its SHA-256 like every tokenizer file."""

    name = "marian"
    FILE = "sentencepiece.model"

    def __init__(self, proto: bytes, source_end: bool = False) -> None:
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except RuntimeError as exc:
            raise ValueError(f"not a SentencePiece model ({exc})") from None
        self._processor, self._proto, self.source_end = processor, proto, source_end

    def encode(self, text: str) -> list[str]:
        code: list[str] = []
        end = text.find("<<") if text.startswith(">>") else -1
        if end != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        pieces = code + list(self._processor.EncodeAsPieces(text))
        return pieces + [SOURCE_END] if self.source_end else pieces

    def decode(self, pieces: Sequence[str]) -> str:
        return self._processor.DecodePieces([p for p in pieces if p != SOURCE_END])

    def train(self, texts: Iterable[str]) -> None:
        return None  # trained with the model: its pieces are the model's vocabulary

    def save(self, directory: Path, prefix: str) -> list[str]:
        name = f"{prefix}{self.FILE}"
        (directory / name).write_bytes(self._proto)
        return [name]

    def options(self) -> dict[str, Any]:
        return {"source_end": True} if self.source_end else {}


def _make_tokenizer(
    options: dict[str, Any], directory: Path | None, prefix: str
) -> MarianSentencePiece:
    if set(options) - {"source_end"} or options.get("source_end", False) not in (True, False):
        raise ValueError(
            f"tokenizer 'marian' options: only source_end (true or false), got {options!r}"
        )
    if directory is None:
        raise ValueError(
            "tokenizer 'marian' comes with an imported model (seq2seq-kit import --format "
            "marian); it is not trained here"
        )
    proto = (directory / f"{prefix}{MarianSentencePiece.FILE}").read_bytes()
    return MarianSentencePiece(proto, bool(options.get("source_end", False)))


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
    weight_files = _weight_files(source)
    config_file = source / "config.json"
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise ModelImportError(f"{config_file}: not a JSON object")
    for name in ("vocab.json", "source.spm", "target.spm"):
        if not (source / name).is_file():
            raise ModelImportError(
                f"{source / name}: missing; the tokenizer's files come from "
                f"MarianTokenizer.save_pretrained (source.spm, target.spm, vocab.json)"
            )
    if (source / "target_vocab.json").exists():
        raise ModelImportError(
            f"{source / 'target_vocab.json'}: a separate target vocabulary "
            f"(MarianTokenizer separate_vocabs) is not supported; this import needs one "
            f"vocabulary for both sides"
        )
    settings = _settings(config, config_file)
    pieces = _marian_pieces(source / "vocab.json", settings)
    order = _order(pieces, settings, source / "vocab.json")
    spec = _spec(settings, len(order) + 1, config_file)
    tensors: dict[str, np.ndarray] = {}
    for file in weight_files:
        tensors.update(_load_tensors(file))
    weights = _weights(tensors, spec, settings, order, weight_files[0])
    tokens = tuple(pieces[i] for i in order[len(SPECIALS) - 1 : -1]) + (SOURCE_END,)
    vocabularies = []
    for side in ("source", "target"):
        spm_file = source / f"{side}.spm"
        try:
            tokenizer = MarianSentencePiece(spm_file.read_bytes(), side == "source")
        except ValueError as exc:
            raise ModelImportError(f"{spm_file}: {exc}") from None
        vocabularies.append(Vocabulary(tokens, tokenizer))
    read = [config_file, *weight_files, source / "vocab.json"]
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
        vocabularies[0],
        vocabularies[1],
        weights,
        max_length=min(max_length, spec.max_positions - 1),
        meta=meta,
    )


def _weight_files(source: Path) -> list[Path]:
    single, index = source / "model.safetensors", source / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        data = _read_json(index)
        try:
            names = sorted(set(data["weight_map"].values()))
        except (KeyError, TypeError, AttributeError):
            raise ModelImportError(f"{index}: no weight_map of tensor -> file") from None
        files = []
        for name in names:
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise ModelImportError(f"{index}: {name!r} is not a file of the directory")
            if not (source / name).is_file():
                raise ModelImportError(f"{source / name}: missing (listed in {index.name})")
            files.append(source / name)
        return files
    pickled = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")]
    found = [n for n in pickled if (source / n).exists()]
    if found:
        raise ModelImportError(
            f"{source}: holds {found[0]} but no model.safetensors; a pickle is never loaded "
            f"here (loading one may run code). Get the safetensors weights: download "
            f"model.safetensors where the model's page has it, or convert on a machine with "
            f"transformers: MarianMTModel.from_pretrained(DIR).save_pretrained(NEW_DIR) "
            f"writes model.safetensors"
        )
    raise ModelImportError(
        f"{single}: missing; a MarianMTModel directory holds config.json, model.safetensors, "
        f"source.spm, target.spm and vocab.json"
    )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ModelImportError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"{path}: not valid JSON ({exc})") from None


def _settings(config: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """The config's values with transformers' defaults, every key checked."""
    if config.get("model_type") != "marian":
        raise ModelImportError(
            f"{config_file}: model_type is {config.get('model_type')!r}, not 'marian'"
        )
    known = IGNORED_KEYS | READ_KEYS | FIXED_KEYS.keys()
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelImportError(
            f"{config_file}: unknown key {unknown[0]!r}; this import does not know what it "
            f"changes, so it does not guess"
        )
    settings = {**DEFAULTS, **config}
    for key, wanted in FIXED_KEYS.items():
        if key in settings and settings[key] != wanted:
            raise ModelImportError(
                f"{config_file}: {key} = {json.dumps(settings[key])} is not supported (only "
                f"{json.dumps(wanted)}): {_WHY[key]}"
            )
    decoder_vocab = settings["decoder_vocab_size"]
    if decoder_vocab is not None and decoder_vocab != settings.get("vocab_size"):
        raise ModelImportError(
            f"{config_file}: decoder_vocab_size = {decoder_vocab} differs from vocab_size = "
            f"{settings.get('vocab_size')}: a separate decoder vocabulary is not supported"
        )
    for key in ("vocab_size", "d_model", "pad_token_id", "eos_token_id"):
        if key not in config:
            raise ModelImportError(f"{config_file}: no {key!r}")
    start = settings.get("decoder_start_token_id", settings["pad_token_id"])
    if start != settings["pad_token_id"]:
        raise ModelImportError(
            f"{config_file}: decoder_start_token_id = {start} is not pad_token_id = "
            f"{settings['pad_token_id']}: this import maps Marian's start (pad) row onto our BOS"
        )
    activation = settings["activation_function"]
    if activation not in ACTIVATIONS:
        raise ModelImportError(
            f"{config_file}: activation_function = {activation!r} is not supported (only "
            f"{', '.join(sorted(ACTIVATIONS))})"
        )
    for ours, pair in (
        ("num_heads", ("encoder_attention_heads", "decoder_attention_heads")),
        ("ff_size", ("encoder_ffn_dim", "decoder_ffn_dim")),
    ):
        values = [settings.get(key) for key in pair]
        if None in values or values[0] != values[1]:
            raise ModelImportError(
                f"{config_file}: {pair[0]} = {values[0]} and {pair[1]} = {values[1]}: our "
                f"Transformer has one {ours} for both sides"
            )
    return settings


_WHY = {
    "normalize_before": "a pre-norm Marian model; the Hugging Face Marian is post-norm",
    "normalize_embedding": "a norm on the embeddings, which Marian lacks",
    "add_final_layer_norm": "a final norm on each side, which a post-norm Marian lacks",
    "static_position_embeddings": "learned positions; Marian's are sinusoidal",
    "scale_embedding": "embeddings not scaled by sqrt(d_model); ours always are",
    "encoder_layerdrop": "layer drop in training, which our Transformer lacks",
    "decoder_layerdrop": "layer drop in training, which our Transformer lacks",
    "activation_dropout": "dropout inside the feed-forward block in training, which our "
    "Transformer lacks",
    "share_encoder_decoder_embeddings": "separate source and target embeddings",
    "is_encoder_decoder": "not an encoder-decoder",
}


def _marian_pieces(vocab_file: Path, settings: dict[str, Any]) -> list[str]:
    """Marian's pieces in id order, from ``vocab.json`` (piece -> id, ids 0..V-1)."""
    data = _read_json(vocab_file)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in data.items()
    ):
        raise ModelImportError(f"{vocab_file}: not an object of piece -> integer id")
    size = settings["vocab_size"]
    if sorted(data.values()) != list(range(size)):
        raise ModelImportError(
            f"{vocab_file}: its ids are not 0..{size - 1} once each (config vocab_size = {size})"
        )
    pieces = [""] * size
    for piece, idx in data.items():
        pieces[idx] = piece
    return pieces


def _order(pieces: list[str], settings: dict[str, Any], vocab_file: Path) -> list[int]:
    """Marian's id of each of our ids but PAD (which Marian lacks): BOS, EOS, UNK, the
    other pieces in Marian's order, and EOS again for :data:`SOURCE_END`."""
    if "<unk>" not in pieces:
        raise ModelImportError(f"{vocab_file}: no '<unk>' piece")
    pad, eos, unk = settings["pad_token_id"], settings["eos_token_id"], pieces.index("<unk>")
    if len({pad, eos, unk}) != 3 or not all(0 <= i < len(pieces) for i in (pad, eos)):
        raise ModelImportError(
            f"{vocab_file}: pad_token_id {pad}, eos_token_id {eos} and '<unk>' ({unk}) must be "
            f"three ids of the vocabulary"
        )
    specials = [pad, eos, unk]
    rest = [i for i in range(len(pieces)) if i not in specials]
    clash = [pieces[i] for i in rest if pieces[i] in (*SPECIALS, SOURCE_END)]
    if clash:
        raise ModelImportError(
            f"{vocab_file}: piece {clash[0]!r} is not one of Marian's specials but is named "
            f"as one of ours"
        )
    return specials + rest + [eos]


def _spec(settings: dict[str, Any], size: int, config_file: Path) -> TransformerSpec:
    try:
        return TransformerSpec(
            src_vocab_size=size,
            tgt_vocab_size=size,
            encoder_layers=settings.get("encoder_layers"),
            decoder_layers=settings.get("decoder_layers"),
            d_model=settings["d_model"],
            num_heads=settings["encoder_attention_heads"],
            ff_size=settings["encoder_ffn_dim"],
            dropout=float(settings["dropout"]),
            attention_dropout=float(settings["attention_dropout"]),
            activation=ACTIVATIONS[settings["activation_function"]],
            layer_norm="post",
            positions="learned",
            max_positions=settings["max_position_embeddings"],
            tie_output_embeddings=bool(settings["tie_word_embeddings"]),
            share_embeddings=True,
        )
    except (ValueError, TypeError) as exc:
        raise ModelImportError(f"{config_file}: {exc}") from None


def _load_tensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ModelImportError(
            f"{file}: unreadable safetensors file ({exc}); bfloat16 weights are not read by "
            f"NumPy: save them as float32 (model.float().save_pretrained(...))"
        ) from None


def _weights(
    tensors: dict[str, np.ndarray],
    spec: TransformerSpec,
    settings: dict[str, Any],
    order: list[int],
    file: Path,
) -> dict[str, np.ndarray]:
    """The canonical weights: every tensor of ``tensors`` used once (an embedding stored
    under several names must be one table), none missing."""
    used: set[str] = set()
    vocab, d = settings["vocab_size"], spec.d_model

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise ModelImportError(f"{file}: no tensor {name!r}")
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise ModelImportError(
                f"{file}: {name} has shape {tuple(value.shape)}, expected {shape}"
            )
        used.add(name)
        return np.asarray(value, dtype=np.float32)

    def permuted_rows(table: np.ndarray) -> np.ndarray:
        """Marian rows in our id order, our PAD's a row of zeros first."""
        return np.concatenate([np.zeros((1,) + table.shape[1:], np.float32), table[order]])

    embedding_names = [
        n
        for n in (
            "model.shared.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
        )
        if n in tensors
    ]
    if not embedding_names:
        raise ModelImportError(f"{file}: no embedding (model.shared.weight)")
    embedding = take(embedding_names[0], (vocab, d))
    for name in embedding_names[1:]:
        if not np.array_equal(take(name, (vocab, d)), embedding):
            raise ModelImportError(
                f"{file}: {name} differs from {embedding_names[0]}: not one shared embedding"
            )
    out = {"encoder.embedding": permuted_rows(embedding)}
    bias = np.zeros(vocab, np.float32)
    if "final_logits_bias" in tensors:
        bias = take("final_logits_bias", (1, vocab))[0]
    # PAD and the source-end mark are never an output: no probability for either
    bias = np.concatenate([[PAD_BIAS], bias[order]]).astype(np.float32)
    bias[-1] = PAD_BIAS
    out["decoder.output.bias"] = bias
    if spec.tie_output_embeddings:
        used.add("lm_head.weight")  # tied: transformers reads the embedding in its place
    else:
        out["decoder.output.kernel"] = permuted_rows(take("lm_head.weight", (vocab, d))).T.copy()
    for side, layers in (("encoder", spec.encoder_layers), ("decoder", spec.decoder_layers)):
        stored = f"model.{side}.embed_positions.weight"
        if stored in tensors:  # transformers loads a stored table over its computed one
            out[f"{side}.positions"] = take(stored, (spec.max_positions, d))
        else:
            out[f"{side}.positions"] = position_table(spec.max_positions, d)
        for layer in range(layers):
            theirs, ours = f"model.{side}.layers.{layer}", f"{side}.layers.{layer}"
            parts = [("self_attn", "self_attention")]
            if side == "decoder":
                parts.append(("encoder_attn", "cross_attention"))
            for their_block, our_block in parts:
                for their_part, our_part in _ATTENTION.items():
                    name = f"{theirs}.{their_block}.{their_part}"
                    # nn.Linear keeps [out, in]; our kernels act on row vectors: [in, out]
                    out[f"{ours}.{our_block}.{our_part}.kernel"] = take(
                        f"{name}.weight", (d, d)
                    ).T.copy()
                    out[f"{ours}.{our_block}.{our_part}.bias"] = take(f"{name}.bias", (d,))
            for their_norm, our_norm in _NORMS.items():
                if side == "encoder" and their_norm == "encoder_attn_layer_norm":
                    continue
                out[f"{ours}.{our_norm}.scale"] = take(f"{theirs}.{their_norm}.weight", (d,))
                out[f"{ours}.{our_norm}.bias"] = take(f"{theirs}.{their_norm}.bias", (d,))
            ff = spec.ff_size
            for their_fc, our_fc, shape in (("fc1", "inner", (ff, d)), ("fc2", "outer", (d, ff))):
                out[f"{ours}.feed_forward.{our_fc}.kernel"] = take(
                    f"{theirs}.{their_fc}.weight", shape
                ).T.copy()
                out[f"{ours}.feed_forward.{our_fc}.bias"] = take(
                    f"{theirs}.{their_fc}.bias", (shape[0],)
                )
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise ModelImportError(
            f"{file}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); this "
            f"import does not know where it goes"
        )
    return out


@hookimpl
def register_importers(register: Callable[..., None]) -> None:
    register(FORMAT, read_marian)


@hookimpl
def register_tokenizers(register: Callable[..., None]) -> None:
    register("marian", _make_tokenizer)
