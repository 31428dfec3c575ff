"""Canonical Transformer weights -> a CTranslate2 model, through CTranslate2's model-spec API
(``ctranslate2.specs.TransformerSpec``), every weight variable set explicitly.

The mapping (ours -> CTranslate2's ``TransformerSpec`` variables). Our kernels act on row
vectors, ``[in, out]``; CTranslate2's linear weights are PyTorch's ``[out, in]``, so every
kernel is transposed::

    {side}.embedding                        -> {side}.embeddings.weight   (scaled by sqrt(D))
    sinusoidal or {side}.positions [P, D]   -> {side}.position_encodings.encodings [P, D]
    *.self_attention.{query,key,value}      -> *.self_attention.linear[0] (fused, [3D, D])
    *.self_attention.output                 -> *.self_attention.linear[1]
    *.self_attention_norm                   -> *.self_attention.layer_norm.{gamma,beta}
    decoder.*.cross_attention.query         -> decoder.*.attention.linear[0]
    decoder.*.cross_attention.{key,value}   -> decoder.*.attention.linear[1] (fused, [2D, D])
    decoder.*.cross_attention.output        -> decoder.*.attention.linear[2]
    *.feed_forward.{inner,outer}            -> *.ffn.linear_0, *.ffn.linear_1
    *.feed_forward_norm                     -> *.ffn.layer_norm
    {side}.final_norm (pre-norm)            -> {side}.layer_norm
    decoder.output (or the tied embedding)  -> decoder.projection.{weight,bias}

CTranslate2's built-in sinusoids put every sine before every cosine; ours interleave them
(sine on even, cosine on odd features), so the table is always written out. Its layer norms
take their epsilon from the model config: ours, 1e-5. Its position encodings are counted
from 0 on each side, the decoder's start token at 0: as ours. Post-norm is CTranslate2's
``pre_norm=False`` (``norm(x + sublayer(x))``, no final norm); GELU is its exact erf form
(``Activation.GELU``).

Quantization (:func:`to_ctranslate2`'s ``quantization``): CTranslate2's own
``ModelSpec.optimize``, which first makes equal variables one (a shared or tied embedding is
stored once) and then converts the weights of its linear and embedding layers to the scheme
(int8 and int16: a scale per output row, ``127 / max |row|`` and ``2**10 / max |w|``),
the other variables (layer norms, biases, the position table) to the scheme's float type
(float32 for int8_float32 and int16). Every export is optimized, float32 ones too, so that
sizes compare one storage with another.

Vocabularies: CTranslate2 reads tokens as strings. A model directory exported with its
vocabularies carries the real tokens; a model made from weights alone (the backend) names id
``i`` ``"i"``, except that the specials keep CTranslate2's own names, which are ours
(``<pad>``, ``<s>``, ``</s>``, ``<unk>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seq2seq_kit.errors import ExportError
from seq2seq_kit.spec import Spec, TransformerSpec
from seq2seq_kit.vocab import SPECIALS
from seq2seq_kit.weights import LAYER_NORM_EPSILON, check_weights, sinusoidal_positions


def check_convertible(spec: Spec) -> TransformerSpec:
    """``spec`` when CTranslate2 can run it.

    Raises:
        ExportError: an RNN (CTranslate2 runs Transformers only).
    """
    if not isinstance(spec, TransformerSpec):
        raise ExportError(
            f"CTranslate2 runs Transformer models only; this model's architecture is "
            f'{spec.architecture!r} (model.architecture = "transformer" to train one)'
        )
    return spec


def id_tokens(size: int) -> list[str]:
    """Token strings of ids ``0 .. size - 1`` for a model without its vocabulary: the
    specials by name, every other id as its decimal string."""
    return [SPECIALS[i] if i < len(SPECIALS) else str(i) for i in range(size)]


def to_ctranslate2(
    spec: TransformerSpec,
    weights: dict[str, np.ndarray],
    source_tokens: Sequence[str] | None = None,
    target_tokens: Sequence[str] | None = None,
    quantization: str | None = None,
) -> Any:
    """The ``ctranslate2.specs.TransformerSpec`` of our ``spec`` and canonical ``weights``
    (float32), with the given token lists as vocabularies (default: :func:`id_tokens`),
    optimized (equal variables stored once) and with its weights converted to
    ``quantization`` (a scheme of :data:`seq2seq_kit.quantization.SCHEMES`; None: float32).
    ``weights`` are not modified.

    Raises:
        ExportError: not a Transformer, or the weights or vocabularies do not fit ``spec``.
    """
    from ctranslate2.specs import common_spec, transformer_spec

    check_convertible(spec)
    try:
        check_weights(spec, weights)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    # copies: CTranslate2's quantization scales the arrays it is given in place
    w = {name: np.array(value, dtype=np.float32) for name, value in weights.items()}
    activation = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
        "swish": common_spec.Activation.SWISH,
    }
    pre_norm = spec.layer_norm == "pre"
    encoder = transformer_spec.TransformerEncoderSpec(
        spec.encoder_layers,
        spec.num_heads,
        pre_norm=pre_norm,
        no_final_norm=not pre_norm,
        activation=activation[spec.activation],
    )
    decoder = transformer_spec.TransformerDecoderSpec(
        spec.decoder_layers,
        spec.num_heads,
        pre_norm=pre_norm,
        no_final_norm=not pre_norm,
        activation=activation[spec.activation],
    )
    model = transformer_spec.TransformerSpec(encoder, decoder)
    model.config.layer_norm_epsilon = LAYER_NORM_EPSILON

    tables = {
        "encoder": w["encoder.embedding"],
        "decoder": w["encoder.embedding" if spec.share_embeddings else "decoder.embedding"],
    }
    for side, layer_specs in (("encoder", encoder), ("decoder", decoder)):
        embeddings = layer_specs.embeddings[0] if side == "encoder" else layer_specs.embeddings
        embeddings.weight = tables[side]
        layer_specs.scale_embeddings = True  # embedding * sqrt(D)
        layer_specs.position_encodings.encodings = _positions(spec, w, side)
        if pre_norm:
            _norm(layer_specs.layer_norm, w, f"{side}.final_norm")
        for index, layer in enumerate(layer_specs.layer):
            prefix = f"{side}.layers.{index}"
            _attention(layer.self_attention, w, f"{prefix}.self_attention", fused=True)
            if side == "decoder":
                _attention(layer.attention, w, f"{prefix}.cross_attention", fused=False)
            _linear(layer.ffn.linear_0, w, f"{prefix}.feed_forward.inner")
            _linear(layer.ffn.linear_1, w, f"{prefix}.feed_forward.outer")
            _norm(layer.ffn.layer_norm, w, f"{prefix}.feed_forward_norm")
    kernel = tables["decoder"] if spec.tie_output_embeddings else w["decoder.output.kernel"].T
    decoder.projection.weight = np.ascontiguousarray(kernel)
    decoder.projection.bias = w["decoder.output.bias"]

    source = list(source_tokens) if source_tokens is not None else id_tokens(spec.src_vocab_size)
    target = list(target_tokens) if target_tokens is not None else id_tokens(spec.tgt_vocab_size)
    for side, tokens, size in (
        ("source", source, spec.src_vocab_size),
        ("target", target, spec.tgt_vocab_size),
    ):
        if len(tokens) != size or len(set(tokens)) != size:
            raise ExportError(
                f"the {side} vocabulary has {len(tokens)} tokens ({len(set(tokens))} distinct) "
                f"but the model has {size} {side} ids"
            )
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ExportError(f"the {side} vocabulary does not start with {SPECIALS}")
    model.register_source_vocabulary(source)
    model.register_target_vocabulary(target)
    model.validate()
    model.optimize(quantization=quantization)
    return model


def _positions(spec: TransformerSpec, w: dict[str, np.ndarray], side: str) -> np.ndarray:
    if spec.stored_positions:
        return w[f"{side}.positions"]
    return sinusoidal_positions(spec.max_positions, spec.d_model)


def _linear(layer: Any, w: dict[str, np.ndarray], *prefixes: str) -> None:
    """One CTranslate2 linear layer from our kernels ``[D, out]`` (several: fused, their
    outputs concatenated in order)."""
    layer.weight = np.ascontiguousarray(np.concatenate([w[p + ".kernel"].T for p in prefixes]))
    layer.bias = np.concatenate([w[p + ".bias"] for p in prefixes])


def _norm(layer: Any, w: dict[str, np.ndarray], prefix: str) -> None:
    layer.gamma = w[prefix + ".scale"]
    layer.beta = w[prefix + ".bias"]


def _attention(layer: Any, w: dict[str, np.ndarray], prefix: str, *, fused: bool) -> None:
    if fused:  # self-attention: one [3D, D] projection for queries, keys and values
        _linear(layer.linear[0], w, f"{prefix}.query", f"{prefix}.key", f"{prefix}.value")
        _linear(layer.linear[1], w, f"{prefix}.output")
    else:  # cross-attention: queries; keys and values of the encoder output; output
        _linear(layer.linear[0], w, f"{prefix}.query")
        _linear(layer.linear[1], w, f"{prefix}.key", f"{prefix}.value")
        _linear(layer.linear[2], w, f"{prefix}.output")
    _norm(layer.layer_norm, w, prefix + "_norm")
