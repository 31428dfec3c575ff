"""The ``marian`` import's ``config.json``: read, every key checked against transformers'
defaults, refused by name where this import cannot express a value, and made our
:class:`~seq2seq_kit.architectures.transformer.TransformerSpec`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...architectures.transformer import TransformerSpec
from ...errors import ModelImportError
from .files import read_json

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
#: Why each value but the one of :data:`FIXED_KEYS` is refused.
WHY = {
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


def read_config(config_file: Path) -> dict[str, Any]:
    """The JSON object of ``config_file``, as it is written."""
    config = read_json(config_file)
    if not isinstance(config, dict):
        raise ModelImportError(f"{config_file}: not a JSON object")
    return config


def settings_of(config: dict[str, Any], config_file: Path) -> dict[str, Any]:
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
                f"{json.dumps(wanted)}): {WHY[key]}"
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


def spec_of(settings: dict[str, Any], size: int, config_file: Path) -> TransformerSpec:
    """Our Transformer spec of the checked ``settings``, ``size`` ids on each side."""
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
            positions="table",  # never trained: Marian's are fixed sinusoids
            max_positions=settings["max_position_embeddings"],
            tie_output_embeddings=bool(settings["tie_word_embeddings"]),
            share_embeddings=True,
        )
    except (ValueError, TypeError) as exc:
        raise ModelImportError(f"{config_file}: {exc}") from None
